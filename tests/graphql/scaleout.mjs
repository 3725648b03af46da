// graphql-ws, unchanged, subscribed on one Basalt instance while records are written
// through the others (tests/tests/api/scaleout.rs). Env: SUB_URL (the subscriber's
// instance), WRITE_URLS (comma-separated), TOKEN (the subscriber's), prints
// `ok NAME` per check and exits 1 on the first failure.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const env = process.env;
const ok = (name) => console.log("ok " + name);
const fail = (message) => {
  console.error("FAIL " + message);
  process.exit(1);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const writers = env.WRITE_URLS.split(",");
async function write(url, heading) {
  const res = await fetch(`${url}/api/collections/notes/records`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: env.TOKEN },
    body: JSON.stringify({ heading }),
  });
  if (!res.ok && res.status !== 204) fail(`writing through ${url}: ${res.status} ${await res.text()}`);
}

const client = createClient({
  url: env.SUB_URL.replace(/^http/, "ws") + "/graphql",
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  lazy: false,
  connectionParams: { Authorization: env.TOKEN },
});
const seen = [];
client.subscribe(
  { query: "subscription { notes { action record { id heading } } }" },
  {
    next: (value) => (value.errors ? fail(JSON.stringify(value.errors)) : seen.push(value.data.notes)),
    error: (err) => fail("subscription error: " + JSON.stringify(err)),
    complete: () => {},
  },
);
// The subscription starts asynchronously: probe through another instance until one
// event arrives.
const end = Date.now() + 10000;
while (!seen.some((e) => e.record.heading === "gql probe")) {
  if (Date.now() > end) fail("the subscription never started");
  await write(writers[0], "gql probe");
  await sleep(100);
}
const expected = [];
for (const [i, url] of writers.entries()) {
  await write(url, "secret");
  expected.push(`gql ${i}`);
  await write(url, `gql ${i}`);
}
const until = Date.now() + 10000;
const real = () => seen.map((e) => e.record.heading).filter((h) => h !== "gql probe");
while (real().length < expected.length && Date.now() < until) await sleep(50);
const got = real();
if (JSON.stringify(got) !== JSON.stringify(expected)) {
  fail(`events through other instances: ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
}
ok("graphql subscription hears writes through every other instance, under its view rule");
await client.dispose();
process.exit(0);
