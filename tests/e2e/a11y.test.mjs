// axe-core's WCAG 2 A and AA rules and best practices on every page and every task status, in
// light and dark schemes, before and after live swaps; the live region announces changes; and
// screenshots of what users see, under target/e2e/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  launch, context, URL, submitApi, getTask, statusIs, assertAccessible, shot, startServer,
} from "./lib.mjs";

let browser;
let slow; // a server whose attempts take a minute, one at a time: tasks stay running or pending
before(async () => {
  browser = await launch();
  slow = await startServer([
    "--addr", "127.0.0.1:0", "--store", "memory", "--process-delay-ms", "60000",
    "--max-concurrent-processing", "1",
  ]);
});
after(async () => {
  await browser?.close();
  await slow?.stop();
});

async function decide(id, body) {
  const res = await fetch(`${URL}/api/tasks/${id}/feedback`, { method: "POST", body: JSON.stringify(body) });
  assert.equal(res.status, 200);
}

async function waiting(id) {
  for (let i = 0; i < 200; i++) {
    const task = await getTask(URL, id);
    if (task.status === "waiting_for_review") return task;
    await new Promise((r) => setTimeout(r, 50)); // the API has no wait; the page tests use SSE
  }
  assert.fail("never waiting for review");
}

/** One task in each status, on the two servers, made once (the slow server runs one at a time). */
let everyStatus;
function tasksInEveryStatus() {
  everyStatus ??= makeTasksInEveryStatus();
  return everyStatus;
}
async function makeTasksInEveryStatus() {
  const running = await submitApi(slow.url, "Running for a minute");
  const pending = await submitApi(slow.url, "Pending behind it");
  const cancelled = await submitApi(slow.url, "Cancelled at once");
  await fetch(`${slow.url}/api/tasks/${cancelled}/cancel`, { method: "POST" });
  const review = await submitApi(URL, "Waiting for a person", { review_timeout_secs: 3600, review_timeout_policy: "approve" });
  const done = await submitApi(URL, "Approved with an edit");
  const failed = await submitApi(URL, "Rejected for good");
  await waiting(review);
  await waiting(done);
  await waiting(failed);
  await decide(done, { decision: "rejected", attempt: 1, comment: "One more time, & <shorter>" });
  await waiting(done);
  await decide(done, { decision: "approved", attempt: 2, output: "The final text, edited." });
  await decide(failed, { decision: "rejected_final", attempt: 1, comment: "Off topic" });
  return [
    ["pending", `${slow.url}/tasks/${pending}`, "Pending"],
    ["running", `${slow.url}/tasks/${running}`, "Running"],
    ["cancelled", `${slow.url}/tasks/${cancelled}`, "Cancelled"],
    ["waiting", `${URL}/tasks/${review}`, "Waiting for review"],
    ["completed", `${URL}/tasks/${done}`, "Completed"],
    ["failed", `${URL}/tasks/${failed}`, "Failed"],
  ];
}

test("every page passes axe in light and dark, with a screenshot of each", async () => {
  const pages = await tasksInEveryStatus();
  for (const scheme of ["light", "dark"]) {
    const ctx = await context(browser, { colorScheme: scheme });
    const page = await ctx.newPage();
    for (const [name, url, label] of pages) {
      await page.goto(url);
      await statusIs(page, label);
      await assertAccessible(page, `task page, ${name}, ${scheme}`);
      await shot(page, `task-${name}-${scheme}`);
    }
    for (const [name, url] of [
      ["home", `${URL}/`],
      ["home-search", `${URL}/?status=completed&q=edited`],
      ["about", `${URL}/about`],
      ["not-found", `${URL}/tasks/0192f000-0000-7000-8000-000000000000`],
      ["no-such-page", `${URL}/nope`],
    ]) {
      await page.goto(url);
      await assertAccessible(page, `${name}, ${scheme}`);
      await shot(page, `${name}-${scheme}`);
    }
    await ctx.close();
  }
});

test("in forced colours (Windows high contrast) the waiting task page passes axe, with a screenshot", async () => {
  const pages = await tasksInEveryStatus();
  const [, url, label] = pages.find(([name]) => name === "waiting");
  const ctx = await context(browser, { forcedColors: "active" });
  const page = await ctx.newPage();
  await page.goto(url);
  await statusIs(page, label);
  await page.locator("#approve").focus();
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none", "focus still shows");
  await assertAccessible(page, "task page, waiting, forced colours");
  await shot(page, "task-waiting-forced-colors");
  await ctx.close();
});

test("on a 320 px wide screen every page reflows: nothing scrolls sideways but a wide table in its box", async () => {
  const pages = await tasksInEveryStatus();
  const ctx = await context(browser, { viewport: { width: 320, height: 640 } });
  const page = await ctx.newPage();
  const others = [["home", `${URL}/`], ["about", `${URL}/about`], ["no-such-page", `${URL}/nope`]];
  for (const [name, url, label] of [...pages, ...others]) {
    await page.goto(url);
    if (label) await statusIs(page, label);
    const { scrollWidth, clientWidth } = await page.evaluate(() => {
      const root = document.documentElement;
      return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth };
    });
    assert.ok(scrollWidth <= clientWidth, `${name}: the page is ${scrollWidth} px wide in a ${clientWidth} px screen`);
    await assertAccessible(page, `${name} at 320 px`);
    await shot(page, `narrow-${name}`);
  }
  await ctx.close();
});

test("the sign-in page passes axe in light and dark", async () => {
  const hash = execFileSync(process.env.HITL_BIN, ["hash-secret"], { input: "a long secret\n" }).toString().trim();
  const server = await startServer([
    "--addr", "127.0.0.1:0", "--store", "memory", "--auth", "token", "--users", `alice:reviewer:${hash}`,
  ]);
  try {
    for (const scheme of ["light", "dark"]) {
      const ctx = await context(browser, { colorScheme: scheme });
      const page = await ctx.newPage();
      await page.goto(`${server.url}/`);
      await page.waitForURL(/sign-in/);
      await assertAccessible(page, `sign-in, ${scheme}`);
      await shot(page, `sign-in-${scheme}`);
      await page.fill("#name", "alice");
      await page.fill("#secret", "wrong");
      await page.click("button[type=submit]");
      await page.locator("[role=alert]").waitFor();
      await assertAccessible(page, `sign-in refused, ${scheme}`);
      await shot(page, `sign-in-refused-${scheme}`);
      await ctx.close();
    }
  } finally {
    await server.stop();
  }
});

test("after live swaps the page still passes axe, and the live region announced each change", async () => {
  const ctx = await context(browser);
  const page = await ctx.newPage();
  const id = await submitApi(URL, "Announce every change");
  await page.goto(`${URL}/tasks/${id}`);
  await statusIs(page, "Waiting for review");
  const region = page.locator("#task-status[role=status][aria-live=polite]");
  const before = await region.innerText();

  await page.fill("#comment", "Again");
  await page.click("#request-changes");
  await page.locator("#task-status-text", { hasText: "Attempt 2 of 3 is ready" }).waitFor();
  const middle = await region.innerText();
  await assertAccessible(page, "task page after a swap");
  await page.click("#approve");
  await statusIs(page, "Completed");
  const end = await region.innerText();

  assert.notEqual(middle, before);
  assert.notEqual(end, middle);
  assert.match(end, /Approved after 2 attempts/);
  await assertAccessible(page, "task page after the last swap");

  // The home page's live list, after a change arrives over its stream
  const home = await ctx.newPage();
  await home.goto(`${URL}/`);
  const announce = home.locator("#announce");
  const other = await submitApi(URL, "Arrives while the home page is open");
  await home.locator(`#task-row-${other}`).waitFor();
  await announce.filter({ hasText: "Arrives while" }).waitFor();
  await assertAccessible(home, "home after a live row");
  await ctx.close();
});
