// The admin UI in a real browser (Debian's Chromium, headless), through the story a
// new user follows: setup link from the log → first superuser → a `posts` collection
// with text, number, select and a relation to users, and a public list rule → three
// records → read them anonymously over plain HTTP → rename a field → the API shows the
// renamed field with the data intact. Plus: a form posted without its CSRF token is
// refused; a stale session is sent to sign-in; a stored <script> never runs; the
// GraphQL explorer linked from the UI runs a query.
//
// Env: BASE (http://127.0.0.1:PORT), SETUP_LINK (as the log printed it), SHOTS (a
// folder for screenshots), CHROMIUM (the browser binary). Prints `ok NAME` per check.

import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const base = process.env.BASE;
const shots = process.env.SHOTS;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const problems = [];
page.on("dialog", (d) => {
  problems.push(`dialog: ${d.message()}`);
  d.dismiss();
});
page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console error: ${m.text()} (${m.location().url})`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

const ok = (name) => console.log(`ok ${name}`);
const shot = async (name, p = page) => p.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const api = async (path, init) => {
  const res = await fetch(base + path, init);
  return { status: res.status, body: await res.json().catch(() => null) };
};

try {
  // The link exactly as the log printed it.
  await page.goto(process.env.SETUP_LINK);
  await page.getByRole("heading", { name: "Welcome to Basalt" }).waitFor();
  await shot("setup");
  await page.getByLabel("Email").fill("owner@example.com");
  await page.getByLabel("Password", { exact: true }).fill("owner-password-1");
  await page.getByLabel("Password again").fill("owner-password-1");
  await page.getByRole("button", { name: "Create superuser" }).click();
  await page.waitForURL("**/_/collections");
  ok("setup creates the first superuser and signs in");
  await shot("collections");

  // A collection with text, number, select and a relation to users; public list/view.
  await page.getByRole("link", { name: "New collection" }).click();
  await page.getByLabel("Name", { exact: true }).fill("posts");
  const fields = [
    ["title", "text", ""],
    ["views", "number", ""],
    ["kind", "select", '{"values": ["news", "blog"], "maxSelect": 1}'],
    ["author", "relation", '{"collectionId": "_pb_users_auth_", "maxSelect": 1}'],
  ];
  for (const [i, [name, type, options]] of fields.entries()) {
    await page.locator(`#field-${i}-name`).fill(name);
    await page.locator(`#field-${i}-type`).selectOption(type);
    await page.locator(`#field-${i}-options`).fill(options);
    if (i < fields.length - 1) {
      await page.getByRole("button", { name: "Add a field row" }).click();
      await page.locator(`#field-${i + 1}-name`).waitFor();
    }
  }
  await page.locator("input[name=listRule_locked]").uncheck();
  await page.locator("input[name=viewRule_locked]").uncheck();
  await shot("collection-editor");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL("**/_/collections/posts?done=created");
  ok("collection created in the editor");

  // Three records through the generated form (one titled with a script).
  const titles = ["First post", "<script>alert('xss')</script>", "Third post"];
  for (const [i, title] of titles.entries()) {
    await page.goto(`${base}/_/collections/posts/records/new`);
    await page.getByLabel("title").fill(title);
    await page.getByLabel("views").fill(String(i + 1));
    await page.getByLabel("kind").selectOption("news");
    if (i === 0) await shot("record-form");
    await page.getByRole("button", { name: "Save" }).click();
    await page.waitForURL("**/_/collections/posts/records?done=created");
  }
  await shot("records");
  ok("three records added");

  // Read them anonymously over plain HTTP: exactly what the rules allow.
  const list = await api("/api/collections/posts/records?sort=views");
  assert.equal(list.status, 200);
  assert.equal(list.body.totalItems, 3);
  assert.deepEqual(list.body.items.map((r) => r.title), titles);
  const create = await api("/api/collections/posts/records", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title: "anonymous" }),
  });
  assert.equal(create.status, 403, "creating stays superuser-only");
  ok("anonymous HTTP sees what the rules allow");

  // Rename a field in the UI: the API shows it renamed with the data intact.
  await page.goto(`${base}/_/collections/posts`);
  await page.locator(`input[name$=".name"][value="title"]`).fill("headline");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL("**/_/collections/posts?done=saved");
  const renamed = await api("/api/collections/posts/records?sort=views");
  assert.deepEqual(renamed.body.items.map((r) => r.headline), titles);
  assert.equal(renamed.body.items[0].title, undefined);
  ok("renamed field keeps its data");

  // The other pages, for the docs.
  for (const [name, path] of [
    ["events", "/_/events"],
    ["mails", "/_/mails"],
    ["settings", "/_/settings"],
    ["schema", "/_/schema"],
    ["schema-history", "/_/schema/history"],
    ["keys", "/_/keys"],
  ]) {
    await page.goto(base + path);
    await shot(name);
  }
  await page.goto(`${base}/_/collections/posts/records`);
  await page.getByRole("link", { name: "raw" }).first().click();
  await page.waitForURL("**/json");
  await shot("record-json");
  await page.goto(`${base}/_/collections/posts/delete`);
  await shot("collection-delete");
  await page.goto(`${base}/_/collections/posts/records`);
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${base}/_/collections/posts/records`);
  await shot("records-390px", phone);
  await phone.close();

  // Keyboard: the first Tab reaches the skip link, Enter moves to the content.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  ok("keyboard reaches the skip link");

  // A form posted without its CSRF token is refused (the session cookie alone is not
  // enough), and nothing is created.
  const forged = await page.request.post(`${base}/_/collections/new`, {
    form: { name: "forged", type: "base", "field.0.name": "x", "field.0.type": "text" },
    maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  await page.goto(`${base}/_/collections`);
  assert.equal(await page.getByRole("link", { name: "forged" }).count(), 0);
  ok("a form without its CSRF token is refused");

  // The GraphQL explorer, from the admin UI's link: a query runs in the browser under
  // the page's strict CSP, and the schema shows the collection.
  await page.goto(`${base}/_/collections`);
  const [explorer] = await Promise.all([
    context.waitForEvent("page"),
    page.getByRole("link", { name: "GraphQL explorer" }).click(),
  ]);
  explorer.on("console", (m) => {
    if (m.type() === "error") problems.push(`explorer console error: ${m.text()}`);
  });
  explorer.on("pageerror", (e) => problems.push(`explorer page error: ${e.message}`));
  await explorer.waitForLoadState();
  await explorer.getByLabel("Operation").fill("{ posts(orderBy: [{headline: ASC}]) { totalItems items { headline } } }");
  await explorer.getByRole("button", { name: /Run/ }).click();
  await explorer.locator("#gql-result").filter({ hasText: "// 200" }).waitFor();
  const result = await explorer.locator("#gql-result").textContent();
  assert.ok(result.includes('"totalItems": 3'), result);
  await explorer.locator("#gql-schema").filter({ hasText: "type Post {" }).waitFor();
  await shot("graphql-explorer", explorer);
  await explorer.close();
  ok("the GraphQL explorer runs a query");

  // The stored script rendered as text and never ran.
  assert.ok((await page.goto(`${base}/_/collections/posts/records`)).ok());
  assert.ok((await page.content()).includes("&lt;script&gt;alert('xss')&lt;/script&gt;"));
  assert.deepEqual(problems, [], "no dialog, console error or page error");
  ok("a stored <script> renders inert");

  // A stale session is sent to sign-in.
  await context.clearCookies();
  await context.addCookies([
    { name: "basalt_admin", value: "stale.session.token", url: `${base}/_/` },
  ]);
  await page.goto(`${base}/_/collections/posts`);
  await page.waitForURL("**/_/login?next=*");
  await shot("login");
  await page.getByLabel("Email").fill("owner@example.com");
  await page.getByLabel("Password").fill("owner-password-1");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL("**/_/collections/posts");
  ok("a stale session goes to sign-in and comes back");
} finally {
  await browser.close();
}
