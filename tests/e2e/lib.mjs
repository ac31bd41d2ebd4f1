// Shared by the end-to-end tests: Debian's Chromium, the server under test, axe-core, and the
// small waits a live page needs (on what the page shows, never on a clock).
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import path from "node:path";

const require = createRequire(import.meta.url);
export const AXE = require.resolve("axe-core/axe.min.js");
export const URL = process.env.HITL_URL;
export const SHOTS = process.env.HITL_SHOTS;

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export async function launch() {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: FLAGS });
}

/** A browser context; axe is injected as a script, which the page's CSP would refuse. */
export async function context(browser, options = {}) {
  return browser.newContext({ bypassCSP: true, ...options });
}

/** Submits a task through the API and returns its id. */
export async function submitApi(base, input, extra = {}) {
  const res = await fetch(`${base}/api/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ input, ...extra }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).id;
}

export async function getTask(base, id) {
  return (await fetch(`${base}/api/tasks/${id}`)).json();
}

/** Waits until the task page's status badge reads `label`. */
export async function statusIs(page, label) {
  await page.locator("#task-status-text .badge", { hasText: label }).waitFor({ timeout: 15000 });
}

/** axe-core's WCAG 2 A/AA and best-practice rules: no violations, or the test fails naming them. */
export async function assertAccessible(page, what) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    }),
  );
  const problems = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`,
  );
  assert.deepEqual(problems, [], `${what}: accessibility violations`);
}

export async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

// A test that fails half-way leaves its server running; run.sh's --test-force-exit ends the
// test file's process anyway, and this kills what it left.
const children = new Set();
process.on("exit", () => children.forEach((child) => child.kill("SIGKILL")));

/** Starts another hitl (for restarts), returning its URL and a stop function. */
export async function startServer(args) {
  const child = spawn(process.env.HITL_BIN, args, { stdio: ["ignore", "pipe", "inherit"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const m = out.match(/listening on (\S+)/);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`hitl exited with ${code}`)));
  });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once("exit", resolve);
      child.kill("SIGTERM");
    });
  return { url, stop };
}
