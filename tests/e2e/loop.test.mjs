// The review loop as people use it: live with JavaScript, by forms and redirects without it,
// with the keyboard alone, in two tabs at once, across a server restart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import {
  launch, context, URL, submitApi, getTask, statusIs, shot, startServer, assertAccessible,
} from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Marks the page so a reload (which would clear the mark) is detected. */
async function mark(page) {
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
}
async function notReloaded(page) {
  assert.equal(await page.evaluate(() => window.__notReloaded === true), true, "the page was reloaded");
}

test("a task submitted in the page reaches review, goes back with a comment and is approved, all live", async () => {
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/`);
  await page.fill("#input", "Write a haiku about rust");
  await page.click("button:has-text('Submit task')");
  await page.locator("#flash a", { hasText: "Open it" }).click();
  await mark(page);

  await statusIs(page, "Waiting for review");
  await notReloaded(page);
  assert.match(await page.locator("#task-output pre.text").first().innerText(), /Draft 1 of 3/);

  await page.fill("#comment", "Mention the crab");
  await page.click("#request-changes");
  await page.locator("#task-status-text", { hasText: "Attempt 2 of 3 is ready" }).waitFor();
  assert.match(await page.locator("#task-output pre.text").first().innerText(), /- on draft 1: Mention the crab/);
  await page.locator("#task-history", { hasText: "Changes requested" }).waitFor();

  assert.match(await page.title(), /^Waiting for review: Write a haiku about rust · hitl$/);

  await page.click("#approve");
  await statusIs(page, "Completed");
  await notReloaded(page);
  await page.locator("#task-audit td", { hasText: "Approved (attempt 2)" }).waitFor();
  assert.match(await page.title(), /^Completed: Write a haiku about rust · hitl$/, "the tab says it");
  await ctx.close();
});

test("two pages on one task both follow every change", async () => {
  const id = await submitApi(URL, "Watched twice");
  const ctx = await context(browser);
  const [a, b] = [await ctx.newPage(), await ctx.newPage()];
  await a.goto(`${URL}/tasks/${id}`);
  await b.goto(`${URL}/tasks/${id}`);
  await statusIs(a, "Waiting for review");
  await statusIs(b, "Waiting for review");

  await a.click("#approve");

  await statusIs(a, "Completed");
  await statusIs(b, "Completed");
  assert.equal(await b.locator("#approve").count(), 0, "the other page's form is gone");
  await ctx.close();
});

test("a double click submits once and decides once, without an error", async () => {
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/`);
  const input = `Clicked twice ${Date.now()}`;
  await page.fill("#input", input);
  // Two clicks in one go: the second lands while the first request is in flight.
  await page.locator("button", { hasText: "Submit task" }).evaluate((b) => { b.click(); b.click(); });
  await page.locator("#flash a", { hasText: "Open it" }).waitFor();
  const count = async () =>
    (await (await fetch(`${URL}/api/tasks`)).json()).tasks.filter((t) => t.input === input).length;
  assert.equal(await count(), 1, "one task submitted");
  // The same text typed again into the emptied form is meant: a second task.
  await page.locator("#flash").evaluate((flash) => { flash.textContent = ""; });
  await page.fill("#input", input);
  await page.click("button:has-text('Submit task')");
  await page.locator("#flash a", { hasText: "Open it" }).waitFor();
  assert.equal(await count(), 2, "a second task, on purpose");

  await page.locator("#flash a", { hasText: "Open it" }).click();
  await statusIs(page, "Waiting for review");
  await page.locator("#approve").evaluate((b) => { b.click(); b.click(); });
  await statusIs(page, "Completed");
  await page.locator("#task-audit td", { hasText: "Approved (attempt 1)" }).waitFor();
  assert.equal(await page.locator("#task-audit td", { hasText: "Approved" }).count(), 1);
  assert.equal(await page.locator("[role=alert]").count(), 0, "no error shown for the second click");
  await ctx.close();
});

test("a stale decision from a second tab is explained in plain words", async () => {
  const id = await submitApi(URL, "Decided twice");
  const live = await context(browser);
  const still = await context(browser, { javaScriptEnabled: false });
  const a = await live.newPage();
  const b = await still.newPage();
  await a.goto(`${URL}/tasks/${id}`);
  await statusIs(a, "Waiting for review");
  await b.goto(`${URL}/tasks/${id}`);
  await statusIs(b, "Waiting for review");

  await a.click("#approve");
  await statusIs(a, "Completed");
  await b.click("#approve");

  const alert = b.locator("[role=alert]");
  await alert.waitFor();
  assert.match(await alert.innerText(), /completed, not waiting for review/i);
  await statusIs(b, "Completed");
  // axe needs script, which this tab has not: check the same page in the live tab instead.
  const html = await b.content();
  await a.goto(`${URL}/about`); // for the origin the page's links resolve against
  await a.setContent(html);
  assert.ok(await a.evaluate(() => [...document.styleSheets].some((s) => s.cssRules.length > 0)), "styled");
  await assertAccessible(a, "the page explaining a stale decision");
  await live.close();
  await still.close();
});

test("without JavaScript the whole loop works by forms and redirects", async () => {
  const ctx = await context(browser, { javaScriptEnabled: false });
  const page = await ctx.newPage();
  await page.goto(`${URL}/`);
  await page.fill("#input", "No script here");
  await page.click("button:has-text('Submit task')");
  await page.waitForURL(/\/tasks\/[0-9a-f-]+$/);
  const id = page.url().split("/").pop();

  const reloadUntil = async (label) => {
    for (let i = 0; i < 100; i++) {
      if ((await page.locator("#task-status-text .badge").innerText()) === label) return;
      await page.waitForTimeout(100); // no live updates without script: a person reloads too
      await page.reload();
    }
    assert.fail(`never ${label}`);
  };
  await reloadUntil("Waiting for review");
  await page.fill("#comment", "Say more");
  await page.click("#request-changes");
  await page.waitForURL(new RegExp(`/tasks/${id}$`));
  await reloadUntil("Waiting for review");
  assert.match(await page.locator("#task-status-text").innerText(), /Attempt 2 of 3/);

  await page.locator("#edit-output summary").click();
  await page.fill("#edited-output", "Edited without script");
  await page.click("#approve");
  await reloadUntil("Completed");
  assert.equal((await getTask(URL, id)).final_result, "Edited without script");
  await ctx.close();
});

test("the whole loop with the keyboard alone, focus visible and sensible after every swap", async () => {
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/`);
  const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
  const focusKept = async (when) => {
    const now = await focused();
    assert.notEqual(now, "BODY", `focus is not lost when ${when}`);
    const shown = await page.evaluate(() => document.activeElement.matches(":focus-visible"));
    assert.equal(shown, true, `the focused element (${now}) shows it when ${when}`);
  };
  const tabTo = async (test, what) => {
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate(test)) return;
    }
    assert.fail(`Tab never reached ${what}`);
  };

  await tabTo(() => document.activeElement.id === "input", "the input");
  await page.keyboard.type("Keyboard only");
  await tabTo(() => document.activeElement.textContent === "Submit task", "the submit button");
  await page.keyboard.press("Enter");
  await tabTo(() => document.activeElement.textContent === "Open it", "the new task's link");
  await page.keyboard.press("Enter");
  await statusIs(page, "Waiting for review");

  await page.keyboard.press("r");
  assert.equal(await focused(), "comment", "r goes to the comment");
  await page.keyboard.type("Shorter please");
  assert.equal(await page.inputValue("#comment"), "Shorter please", "typing r in a field does not fire");
  await tabTo(() => document.activeElement.id === "request-changes", "Request changes");
  await page.keyboard.press("Enter");
  await page.locator("#task-status-text", { hasText: "Attempt 2 of 3 is ready" }).waitFor();
  await focusKept("the form it was in is replaced");

  // Pressed as soon as attempt 2 shows, before htmx would have wired up the new form on its
  // own: the approval must still go through htmx, not reload the page.
  await mark(page);
  await page.keyboard.press("a");
  await statusIs(page, "Completed");
  await notReloaded(page);
  await focusKept("the approval removes the form");
  await ctx.close();
});

test("the task list follows live: a row changes status in place and the counts move", async () => {
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/`);
  await mark(page);
  const count = async (label) => {
    const text = await page.locator("#inbox-filters a", { hasText: label }).locator(".count").innerText();
    return Number(text.replace(/,/g, ""));
  };
  const completed = await count("Completed");
  const id = await submitApi(URL, "Watched from the list");
  const row = page.locator(`#task-row-${id}`);
  await row.locator(".badge", { hasText: "Waiting for review" }).waitFor();
  const res = await fetch(`${URL}/api/tasks/${id}/feedback`, {
    method: "POST",
    body: JSON.stringify({ decision: "approved", attempt: 1 }),
  });
  assert.equal(res.status, 200);
  await row.locator(".badge", { hasText: "Completed" }).waitFor();
  await page.waitForFunction(
    ([n]) => {
      const link = [...document.querySelectorAll("#inbox-filters a")].find((a) => a.textContent.startsWith("Completed"));
      return Number(link.querySelector(".count").textContent.replace(/,/g, "")) === n + 1;
    },
    [completed],
  );
  assert.equal(await page.locator(`#task-row-${id}`).count(), 1, "one row, changed in place");
  await notReloaded(page);
  await ctx.close();
});

test("a task cancelled from its page shows it live, without its review form", async () => {
  const id = await submitApi(URL, "Cancelled from the page");
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/tasks/${id}`);
  await statusIs(page, "Waiting for review");
  await mark(page);
  await page.click("button:has-text('Cancel task')");
  await statusIs(page, "Cancelled");
  await notReloaded(page);
  assert.equal(await page.locator("#approve").count(), 0, "the review form is gone");
  assert.equal(await page.locator("button", { hasText: "Cancel task" }).count(), 0, "so is the cancel button");
  assert.equal((await getTask(URL, id)).status, "cancelled");
  assert.notEqual(await page.evaluate(() => document.activeElement?.tagName), "BODY", "focus is kept");
  await ctx.close();
});

test("times show in the reader's time zone, the UTC time as the tooltip, also after a swap", async () => {
  const id = await submitApi(URL, "What time is it in Tokyo");
  const ctx = await context(browser, { timezoneId: "Asia/Tokyo", locale: "en-US" });
  const page = await ctx.newPage();
  await page.goto(`${URL}/tasks/${id}`);
  await statusIs(page, "Waiting for review");
  const check = async (time) => {
    const [text, title, iso] = await time.evaluate((t) => [t.textContent, t.title, t.getAttribute("datetime")]);
    assert.match(title, / UTC$/, "the tooltip keeps the server's UTC time");
    const tokyo = new Date(Date.parse(iso) + 9 * 3600 * 1000).toISOString().slice(0, 19).replace("T", " ");
    assert.equal(text, `${tokyo} GMT+9`);
  };
  await check(page.locator("dl.facts time"));
  await page.fill("#comment", "Again");
  await page.click("#request-changes");
  await page.locator("#task-history", { hasText: "Changes requested" }).waitFor();
  await check(page.locator("#task-history time").first());
  await check(page.locator("#task-audit time").last());
  await ctx.close();
});

test("what a reviewer is typing survives the review form being sent again (a deadline extended)", async () => {
  const id = await submitApi(URL, "Keep my words", { review_timeout_secs: 3600, review_timeout_policy: "approve" });
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/tasks/${id}`);
  await statusIs(page, "Waiting for review");
  await page.locator("#edit-output summary").click();
  await page.fill("#edited-output", "My edit");
  await page.fill("#comment", "A long thought I am typing");
  await page.keyboard.press("End");
  const before = await page.locator("#task-review").getAttribute("data-seq");

  const res = await fetch(`${URL}/api/tasks/${id}/deadline`, { method: "POST", body: JSON.stringify({ extend_secs: 600 }) });
  assert.equal(res.status, 200);
  await page.waitForFunction(
    (seq) => document.getElementById("task-review").getAttribute("data-seq") !== seq,
    before,
  );

  assert.equal(await page.inputValue("#comment"), "A long thought I am typing");
  assert.equal(await page.inputValue("#edited-output"), "My edit");
  assert.equal(await page.evaluate(() => document.getElementById("edit-output").open), true);
  const caret = await page.evaluate(() => [document.activeElement.id, document.activeElement.selectionStart]);
  assert.deepEqual(caret, ["comment", "A long thought I am typing".length], "focus and caret stay");
  await page.keyboard.type(", still typing");
  assert.equal(await page.inputValue("#comment"), "A long thought I am typing, still typing");
  await ctx.close();
});

test("the other shortcuts: / searches the list, e edits before approving, n opens the next task", async () => {
  const word = `shortcut${Date.now()}`;
  const first = await submitApi(URL, `Edit me by keyboard ${word}`);
  const second = await submitApi(URL, `Waiting next ${word}`);
  const ctx = await context(browser);
  const page = await ctx.newPage();
  const focused = () => page.evaluate(() => document.activeElement?.id);

  await page.goto(`${URL}/`);
  await page.keyboard.press("/");
  assert.equal(await focused(), "q", "/ goes to the search box");
  await page.keyboard.type(word);
  await page.keyboard.press("Enter");
  await page.waitForURL(new RegExp(`q=${word}`));
  await page.locator(`#task-row-${second}`).waitFor();
  assert.equal(await page.locator(".task-row").count(), 2, "the search finds the two tasks");

  await page.goto(`${URL}/tasks/${first}`);
  await statusIs(page, "Waiting for review");
  await page.keyboard.press("e");
  assert.equal(await focused(), "edited-output", "e goes to the edit box");
  assert.equal(await page.locator("#edit-output").getAttribute("open"), "", "and opens it");
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Edited by keyboard");
  await page.locator("#approve").focus();
  await page.keyboard.press("Enter");
  await statusIs(page, "Completed");
  assert.equal((await getTask(URL, first)).final_result, "Edited by keyboard");

  await page.keyboard.press("n");
  await page.waitForURL((url) => url.pathname.startsWith("/tasks/") && !url.pathname.endsWith(first));
  await statusIs(page, "Waiting for review");
  await ctx.close();
});

test("a page left open while the server restarts says so, reconnects and shows the true state", async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "hitl-e2e-"));
  const args = (addr) => ["--addr", addr, "--data-dir", data, "--process-delay-ms", "0"];
  let server = await startServer(args("127.0.0.1:0"));
  const ctx = await context(browser);
  try {
    const addr = server.url.replace("http://", "");
    const id = await submitApi(server.url, "Outlives a restart");
    const page = await ctx.newPage();
    await page.goto(`${server.url}/tasks/${id}`);
    await statusIs(page, "Waiting for review");
    await mark(page);

    await server.stop();
    const state = page.locator("#live-state[role=status]");
    await state.filter({ hasText: "reconnecting" }).waitFor();
    await assertAccessible(page, "the page while its live connection is down");
    await shot(page, "connection-lost");
    server = await startServer(args(addr));
    const res = await fetch(`${server.url}/api/tasks/${id}/feedback`, {
      method: "POST",
      body: JSON.stringify({ decision: "approved", attempt: 1 }),
    });
    assert.equal(res.status, 200);

    await statusIs(page, "Completed");
    await state.filter({ hasText: "Live updates are back" }).waitFor();
    await notReloaded(page);
    await shot(page, "restart-completed");
  } finally {
    await ctx.close();
    await server.stop();
    fs.rmSync(data, { recursive: true, force: true });
  }
});

test("an agent's draft is reviewed live: sent back, its revision handed in, approved with a note", async () => {
  const post = (path, body) =>
    fetch(`${URL}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const made = await post("/api/tasks", { input: "Agent's release note", output: "A long first draft" });
  assert.equal(made.status, 201);
  const id = (await made.json()).id;
  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/tasks/${id}`);
  await mark(page);
  await statusIs(page, "Waiting for review");

  await page.fill("#comment", "Shorter please");
  await page.click("#request-changes");
  await page.locator("#task-status-text", { hasText: "Waiting for the revision from outside" }).waitFor();
  await page.locator("#task-review", { hasText: "revision from outside is handed in" }).waitFor();
  await assertAccessible(page, "a task waiting for its revision from outside");
  await shot(page, "outside-waiting-for-revision");

  const handed = await post(`/api/tasks/${id}/attempts`, { attempt: 2, output: "A short draft" });
  assert.equal(handed.status, 200);
  await page.locator("#task-status-text", { hasText: "Attempt 2 of 3 is ready" }).waitFor();
  await page.fill("#comment", "Good, ship it");
  await page.click("#approve");
  await statusIs(page, "Completed");
  await notReloaded(page);
  const done = await getTask(URL, id);
  assert.equal(done.outcome, "approved");
  assert.equal(done.attempts[1].comment, "Good, ship it", "the comment typed before Approve is its note");
  await ctx.close();
});

test("a task whose worker gave up says so and a reviewer retries it from the page", async () => {
  const post = (path, body) =>
    fetch(`${URL}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const made = await post("/api/tasks", { input: "Translate the manual", processor: "external" });
  const id = (await made.json()).id;
  // Other tests' outside tasks may be waiting too: claim until this one is ours.
  let token;
  for (let i = 0; i < 20 && !token; i++) {
    const claimed = await post("/api/claims", { wait_secs: 0 });
    if (claimed.status !== 200) break;
    const body = await claimed.json();
    if (body.task.id === id) token = body.claim;
  }
  assert.ok(token, "claimed the task");
  assert.equal((await post(`/api/claims/${token}/fail`, { error: "the model is down" })).status, 200);

  const ctx = await context(browser);
  const page = await ctx.newPage();
  await page.goto(`${URL}/tasks/${id}`);
  await statusIs(page, "Failed");
  await page.locator("#task-status-text", { hasText: "Processing failed at attempt 1: the model is down" }).waitFor();
  await assertAccessible(page, "a task whose processing failed, with Retry");
  await shot(page, "outside-processing-failed");
  await mark(page);
  await page.click("#retry");
  await statusIs(page, "Pending");
  await notReloaded(page);
  assert.equal((await getTask(URL, id)).status, "pending");
  await ctx.close();
});
