// The official PocketBase JS SDK's realtime `subscribe` against Basalt (Node has no
// EventSource of its own; the SDK documents this polyfill). Run by
// tests/tests/api/sdk.rs with BASALT_URL, EMAIL and PASSWORD (a superuser) set.
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import PocketBase from 'pocketbase';

globalThis.EventSource = EventSource;

const url = process.env.BASALT_URL;
const admin = new PocketBase(url);
const ann = new PocketBase(url);
const bob = new PocketBase(url);
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

// `done` resolves with the events `pb` gets on `topic` once `count` have arrived;
// `ready` once the server has the subscription (the SDK's own promise).
function collect(pb, topic, count, options) {
  const events = [];
  let ready;
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${events.length} of ${count} events on ${topic}: ${JSON.stringify(events.map((e) => [e.action, e.record.title]))}`)), 10000);
    ready = pb.collection('notes').subscribe(topic, (e) => {
      events.push(e);
      if (events.length === count) {
        clearTimeout(timer);
        resolve(events);
      }
    }, options);
  });
  return { done, ready, unsubscribe: async () => (await ready)() };
}

check('setup', async () => {
  await admin.collection('_superusers').authWithPassword(process.env.EMAIL, process.env.PASSWORD);
  const rule = 'public = true || author = @request.auth.id';
  await admin.collections.create({
    name: 'notes', listRule: rule, viewRule: rule, createRule: "@request.auth.id != ''",
    updateRule: 'author = @request.auth.id', deleteRule: 'author = @request.auth.id',
    fields: [
      { name: 'title', type: 'text' },
      { name: 'public', type: 'bool' },
      { name: 'author', type: 'relation', collectionId: '_pb_users_auth_' },
    ],
  });
  for (const [pb, name] of [[ann, 'ann'], [bob, 'bob']]) {
    await pb.collection('users').create({ email: `${name}@example.com`, password: `${name}-password`, passwordConfirm: `${name}-password` });
    await pb.collection('users').authWithPassword(`${name}@example.com`, `${name}-password`);
  }
});

check('subscribe: create, update and delete under the view rule', async () => {
  const mine = collect(ann, '*', 4);
  const his = collect(bob, '*', 2, { filter: "title ~ 'pub'" });
  await Promise.all([mine.ready, his.ready]);
  const me = ann.authStore.record.id;
  const secret = await ann.collection('notes').create({ title: 'secret', public: false, author: me });
  const open = await ann.collection('notes').create({ title: 'pub', public: true, author: me });
  await ann.collection('notes').update(open.id, { title: 'pub!' });
  await ann.collection('notes').delete(secret.id);
  const events = await mine.done;
  assert.deepEqual(events.map((e) => [e.action, e.record.title]), [
    ['create', 'secret'], ['create', 'pub'], ['update', 'pub!'], ['delete', 'secret'],
  ]);
  const seen = await his.done;
  // The private note never reaches bob, its delete neither; the filter holds.
  assert.deepEqual(seen.map((e) => [e.action, e.record.id]), [['create', open.id], ['update', open.id]]);
  await mine.unsubscribe();
  await his.unsubscribe();
});

let failed = 0;
for (const [name, fn] of checks) {
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAILED ${name}: ${e.stack ?? e}`);
  }
}
process.exit(failed ? 1 : 0);
