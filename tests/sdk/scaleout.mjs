// The official PocketBase JS SDK through nginx balancing round-robin over several
// Basalt instances (tests/tests/api/scaleout.rs): auth, CRUD, and realtime with
// writes through every instance. BASALT_URL is the proxy, INSTANCES the instances'
// own URLs (comma-separated), EMAIL and PASSWORD a superuser's.
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import PocketBase from 'pocketbase';

globalThis.EventSource = EventSource;

const proxy = process.env.BASALT_URL;
const instances = process.env.INSTANCES.split(',');
const admin = new PocketBase(proxy);
const ann = new PocketBase(proxy);
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('setup through the proxy', async () => {
  await admin.collection('_superusers').authWithPassword(process.env.EMAIL, process.env.PASSWORD);
  const rule = '@request.auth.id != ""';
  await admin.collections.create({
    name: 'posts', listRule: rule, viewRule: rule, createRule: rule, updateRule: rule, deleteRule: rule,
    fields: [{ name: 'title', type: 'text' }, { name: 'n', type: 'number' }],
  });
  await ann.collection('users').create({ email: 'ann@example.com', password: 'ann-password-1', passwordConfirm: 'ann-password-1' });
  await ann.collection('users').authWithPassword('ann@example.com', 'ann-password-1');
  assert.ok(ann.authStore.isValid);
});

check('CRUD, each call on the next instance', async () => {
  for (let i = 0; i < 4; i++) {
    const post = await ann.collection('posts').create({ title: `post ${i}`, n: i });
    const got = await ann.collection('posts').getOne(post.id);
    assert.equal(got.title, `post ${i}`);
    const updated = await ann.collection('posts').update(post.id, { n: i + 10 });
    assert.equal(updated.n, i + 10);
    const list = await ann.collection('posts').getList(1, 50, { filter: `id = "${post.id}"` });
    assert.equal(list.totalItems, 1);
    await ann.collection('posts').delete(post.id);
    await assert.rejects(ann.collection('posts').getOne(post.id), (e) => e.status === 404);
  }
});

check('realtime: writes through every instance reach a subscriber of any', async () => {
  // Several subscribers: round-robin puts their streams and their subscription
  // requests on different instances.
  const subscribers = [];
  for (let s = 0; s < 3; s++) {
    const pb = new PocketBase(proxy);
    pb.authStore.save(ann.authStore.token, ann.authStore.record);
    const events = [];
    await pb.collection('posts').subscribe('*', (e) => events.push(e.record.title));
    subscribers.push({ pb, events });
  }
  const titles = [];
  for (const [i, url] of instances.entries()) {
    const direct = new PocketBase(url);
    direct.authStore.save(ann.authStore.token, ann.authStore.record);
    titles.push(`direct ${i}`);
    await direct.collection('posts').create({ title: `direct ${i}` });
    titles.push(`proxied ${i}`);
    await ann.collection('posts').create({ title: `proxied ${i}` });
  }
  const deadline = Date.now() + 10000;
  while (subscribers.some((s) => s.events.length < titles.length) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const { pb, events } of subscribers) {
    assert.deepEqual(events, titles);
    await pb.realtime.unsubscribe();
  }
});

check('a password change through one instance ends the old token on all', async () => {
  for (let i = 0; i < 4; i++) {
    await ann.collection('users').authRefresh();
  }
  const old = ann.authStore.token;
  const direct = new PocketBase(instances[0]);
  direct.authStore.save(old, ann.authStore.record);
  await direct.collection('users').update(ann.authStore.record.id, {
    oldPassword: 'ann-password-1', password: 'ann-password-2', passwordConfirm: 'ann-password-2',
  });
  for (let i = 0; i < 4; i++) {
    const stale = new PocketBase(proxy);
    stale.authStore.save(old, ann.authStore.record);
    await assert.rejects(stale.collection('users').authRefresh(), (e) => e.status === 401);
  }
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
