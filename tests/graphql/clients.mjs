// Drives Basalt's /graphql with real clients; prints `ok NAME` per check, exits 1 on
// the first failure. Env: BASALT_URL, ADMIN, ANN, ANN_ID, BOB, BOB_ID, MAX_SUBS,
// MAX_CONNECTIONS (the server's limits).
import { Client, fetchExchange, gql } from "@urql/core";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { buildClientSchema, getIntrospectionQuery, printSchema } from "graphql";

const env = process.env;
const url = env.BASALT_URL;
const wsUrl = url.replace(/^http/, "ws") + "/graphql";
const ok = (name) => console.log("ok " + name);
const fail = (message) => {
  console.error("FAIL " + message);
  process.exit(1);
};
const assert = (condition, message) => condition || fail(message);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, check, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const value = await check();
    if (value) return value;
    await sleep(50);
  }
  fail("timed out waiting for " + what);
}

// 1. Introspection, accepted by graphql-js.
{
  const res = await fetch(url + "/graphql", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: getIntrospectionQuery() }),
  });
  const body = await res.json();
  assert(!body.errors, "introspection: " + JSON.stringify(body.errors));
  const schema = buildClientSchema(body.data);
  assert(schema.getQueryType().getFields().notes, "the notes query is in the schema");
  assert(schema.getSubscriptionType().getFields().notes, "the notes subscription is in the schema");
  assert(printSchema(schema).includes("type Note {"), "printSchema has the Note type");
  ok("buildClientSchema accepts the introspection result");
}

// 2. urql: queries and mutations, errors with codes.
const urql = (token) =>
  new Client({
    url: url + "/graphql",
    exchanges: [fetchExchange],
    requestPolicy: "network-only",
    fetchOptions: () => ({ headers: token ? { Authorization: token } : {} }),
  });
const admin = urql(env.ADMIN);
const ann = urql(env.ANN);
const bob = urql(env.BOB);
const CREATE = gql`
  mutation Create($input: NoteCreateInput!) {
    createNote(input: $input) { id title owner { email } }
  }
`;
const LIST = gql`
  query List($where: NoteWhere) {
    notes(where: $where, orderBy: [{ title: ASC }]) { totalItems items { id title } }
  }
`;
{
  const created = await ann.mutation(CREATE, { input: { title: "hello", owner: env.ANN_ID } }).toPromise();
  assert(!created.error, "create: " + created.error);
  assert(created.data.createNote.title === "hello", "created title");
  assert(created.data.createNote.owner.email === "ann@example.com", "nested owner");
  const mine = await ann.query(LIST, { where: { title: { _eq: "hello" } } }).toPromise();
  assert(!mine.error && mine.data.notes.totalItems === 1, "ann lists her note: " + JSON.stringify(mine.data));
  const theirs = await bob.query(LIST, { where: { title: { _eq: "hello" } } }).toPromise();
  assert(!theirs.error && theirs.data.notes.totalItems === 0, "bob does not see ann's note");
  const invalid = await ann.mutation(CREATE, { input: { title: "", owner: env.ANN_ID } }).toPromise();
  const error = invalid.error && invalid.error.graphQLErrors[0];
  assert(error && error.extensions.code === "validation_failed", "validation error code: " + invalid.error);
  assert(error.extensions.fields.title.code === "validation_required", "per-field details");
  const updated = await ann
    .mutation(gql`mutation($id: ID!) { updateNote(id: $id, input: { title: "hello!" }) { title } }`, {
      id: created.data.createNote.id,
    })
    .toPromise();
  assert(!updated.error && updated.data.updateNote.title === "hello!", "update");
  const deleted = await ann
    .mutation(gql`mutation($id: ID!) { deleteNote(id: $id) }`, { id: created.data.createNote.id })
    .toPromise();
  assert(!deleted.error && deleted.data.deleteNote === true, "delete");
  ok("urql queries and mutations work unchanged");
}

// 3. graphql-ws: events filtered by each subscriber's view rule and `where`.
class HeaderAuthWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols, { headers: { Authorization: env.BOB } });
  }
}
const closes = [];
const wsClient = (options) =>
  createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    on: { closed: (event) => closes.push({ who: options.name, code: event.code }) },
    ...options,
  });
function collect(client, query, variables) {
  const seen = { events: [], errors: [] };
  seen.dispose = client.subscribe(
    { query, variables },
    {
      next: (value) => (value.errors ? seen.errors.push(value.errors) : seen.events.push(value.data)),
      error: (err) => seen.errors.push(err),
      complete: () => {},
    },
  );
  return seen;
}
const SUB = `subscription($where: NoteWhere) { notes(where: $where) { action record { id title } } }`;
const annWs = wsClient({ name: "ann", connectionParams: { Authorization: env.ANN } });
const bobWs = wsClient({ name: "bob", webSocketImpl: HeaderAuthWebSocket });
const annSeen = collect(annWs, SUB, { where: { title: { _like: "live%" } } });
const bobSeen = collect(bobWs, SUB, {});
// Subscriptions start asynchronously: write probes until each has one.
await until("ann's subscription to start", async () => {
  await admin.mutation(CREATE, { input: { title: "live probe", owner: env.ANN_ID } }).toPromise();
  return annSeen.events.length > 0;
});
await until("bob's subscription to start", async () => {
  await admin.mutation(CREATE, { input: { title: "probe", owner: env.BOB_ID } }).toPromise();
  return bobSeen.events.length > 0;
});
// Late probe events are told apart by their titles below, not waited out.
const real = (seen) =>
  seen.events
    .map((e) => e.notes.action + " " + e.notes.record.title)
    .filter((line) => !line.includes("probe"));
{
  const one = await admin.mutation(CREATE, { input: { title: "live one", owner: env.ANN_ID } }).toPromise();
  await admin.mutation(CREATE, { input: { title: "quiet", owner: env.ANN_ID } }).toPromise();
  await admin.mutation(CREATE, { input: { title: "live bob", owner: env.BOB_ID } }).toPromise();
  const id = one.data.createNote.id;
  // Each change once the previous one arrived: an event is checked against the row as
  // stored when it is delivered, so a create already deleted would not be shown.
  await until("ann's create event", () => real(annSeen).length >= 1);
  await admin.mutation(gql`mutation($id: ID!) { updateNote(id: $id, input: { title: "live one!" }) { id } }`, { id }).toPromise();
  await until("ann's update event", () => real(annSeen).length >= 2);
  await admin.mutation(gql`mutation($id: ID!) { deleteNote(id: $id) }`, { id }).toPromise();
  // A last note for each: events arrive in commit order, so once it is there, nothing
  // committed before it is still on its way.
  await admin.mutation(CREATE, { input: { title: "live end", owner: env.ANN_ID } }).toPromise();
  await admin.mutation(CREATE, { input: { title: "end b", owner: env.BOB_ID } }).toPromise();
  await until("ann's last event", () => real(annSeen).includes("CREATE live end"));
  await until("bob's last event", () => real(bobSeen).includes("CREATE end b"));
  const annGot = real(annSeen);
  assert(
    JSON.stringify(annGot) ===
      JSON.stringify(["CREATE live one", "UPDATE live one!", "DELETE live one!", "CREATE live end"]),
    "ann's events: " + JSON.stringify(annGot),
  );
  const bobGot = real(bobSeen);
  assert(
    JSON.stringify(bobGot) === JSON.stringify(["CREATE live bob", "CREATE end b"]),
    "bob's events: " + JSON.stringify(bobGot),
  );
  assert(annSeen.errors.length === 0 && bobSeen.errors.length === 0, "no subscription errors");
  ok("graphql-ws subscriptions deliver by view rule and where");
}

// 4. Subscriptions per connection are limited.
{
  const max = Number(env.MAX_SUBS);
  const limited = wsClient({ name: "limited", connectionParams: { Authorization: env.ANN } });
  // One more than allowed, all at once: whichever starts last is refused, the others
  // are kept.
  const held = [];
  for (let i = 0; i <= max; i++) held.push(collect(limited, SUB, {}));
  await until("a subscription over the limit to be refused", () => held.some((s) => s.errors.length > 0));
  const refusedSubs = held.filter((s) => s.errors.length > 0);
  assert(refusedSubs.length === 1, "exactly one refused, got " + refusedSubs.length);
  assert(
    JSON.stringify(refusedSubs[0].errors).includes("subscriptions per connection"),
    JSON.stringify(refusedSubs[0].errors),
  );
  ok("subscriptions per connection are limited");
  // Connections per address: the server refuses the one over the limit.
  const sockets = [];
  let refused = null;
  for (let i = 0; i < Number(env.MAX_CONNECTIONS) - 3 + 1 && !refused; i++) {
    const socket = new WebSocket(wsUrl, "graphql-transport-ws");
    const outcome = await new Promise((resolve) => {
      socket.on("open", () => resolve("open"));
      socket.on("unexpected-response", (_, res) => resolve(res.statusCode));
      socket.on("error", (e) => resolve(String(e)));
    });
    if (outcome === "open") sockets.push(socket);
    else refused = outcome;
  }
  assert(refused === 429, "the connection over the limit is refused with 429, got " + refused + " after " + sockets.length);
  assert(sockets.length === Number(env.MAX_CONNECTIONS) - 3, "the ones under the limit open: " + sockets.length);
  sockets.forEach((s) => s.close());
  limited.dispose();
  ok("connections per address are limited");
}

// 5. A token rotation (a password change) closes the subscriber's socket.
{
  const res = await fetch(url + "/api/collections/users/records/" + env.ANN_ID, {
    method: "PATCH",
    headers: { "content-type": "application/json", Authorization: env.ADMIN },
    body: JSON.stringify({ password: "a-new-password-1", passwordConfirm: "a-new-password-1" }),
  });
  assert(res.status === 200, "password change: " + res.status);
  await until("ann's socket to close", () => closes.find((c) => c.who === "ann"));
  const closed = closes.find((c) => c.who === "ann");
  assert(closed.code === 4403, "closed with 4403, got " + closed.code);
  assert(!closes.find((c) => c.who === "bob"), "bob's socket stays open");
  ok("a token rotation closes the socket");
}
bobWs.dispose();
process.exit(0);
