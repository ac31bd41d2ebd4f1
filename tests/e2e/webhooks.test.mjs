// A task's deliveries on its page: where each stands (a receiver failing at first, then
// accepting), readable and accessible in light and dark, and Redeliver working from the page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { launch, context, submitApi, assertAccessible, shot, startServer } from "./lib.mjs";

let browser, server, receiver, data;
const received = []; // webhook-id of every request, in order
let answer = 500;

before(async () => {
  browser = await launch();
  receiver = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      received.push(req.headers["webhook-id"]);
      res.writeHead(answer).end();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const secret = execFileSync(process.env.HITL_BIN, ["webhook-secret"]).toString().trim();
  data = fs.mkdtempSync(path.join(os.tmpdir(), "hitl-e2e-webhooks-"));
  server = await startServer([
    "--addr", "127.0.0.1:0", "--data-dir", data, "--process-delay-ms", "0",
    "--webhook-url", `http://127.0.0.1:${receiver.address().port}/hook`,
    "--webhook-secret", secret, "--webhook-retry-min-ms", "200",
  ]);
});
after(async () => {
  await browser?.close();
  await server?.stop();
  receiver?.close();
  if (data) fs.rmSync(data, { recursive: true, force: true });
});

async function until(what, check) {
  for (let i = 0; i < 200; i++) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`never: ${what}`);
}

test("the task page lists its deliveries, and Redeliver sends one again with its id", async () => {
  const id = await submitApi(server.url, "Tell the agent when this is decided");
  await until("a failed try", () => received.length >= 1);
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${server.url}/tasks/${id}`);
  const section = page.locator("#deliveries");
  await section.waitFor();
  await section.locator("td", { hasText: "500" }).first().waitFor();
  await assertAccessible(page, "a task page with a delivery being retried");
  await shot(page, "deliveries-retrying");

  answer = 204;
  await until("every delivery accepted", async () => {
    const body = await (await fetch(`${server.url}/api/tasks/${id}/deliveries`)).json();
    return body.deliveries.length === 3 && body.deliveries.every((d) => d.status === "delivered");
  });
  await page.reload();
  await section.locator("td", { hasText: "delivered" }).first().waitFor();
  const dark = await context(browser, { colorScheme: "dark" });
  const darkPage = await dark.newPage();
  await darkPage.goto(`${server.url}/tasks/${id}#deliveries`);
  await assertAccessible(darkPage, "deliveries, dark");
  await shot(darkPage, "deliveries-dark");
  await dark.close();

  const first = (await (await fetch(`${server.url}/api/tasks/${id}/deliveries`)).json()).deliveries[0].id;
  const before = received.filter((r) => r === first).length;
  await page.locator("#deliveries button", { hasText: "Redeliver" }).first().click();
  await page.waitForURL(/#deliveries$/);
  await until("the redelivery", () => received.filter((r) => r === first).length === before + 1);
  await ctx.close();
});
