// The official PocketBase JS SDK against Basalt: superuser sign-in and every
// `pb.collections` call. Run by tests/tests/api/sdk.rs with BASALT_URL, EMAIL and
// PASSWORD set; exits non-zero on the first failed check.
import assert from 'node:assert/strict';
import PocketBase from 'pocketbase';

const pb = new PocketBase(process.env.BASALT_URL);
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('superuser signs in', async () => {
  const auth = await pb.collection('_superusers').authWithPassword(process.env.EMAIL, process.env.PASSWORD);
  assert.ok(auth.token);
  assert.equal(auth.record.email, process.env.EMAIL);
  assert.equal(pb.authStore.isValid, true);
  assert.equal(pb.authStore.isSuperuser, true);
  assert.equal(auth.record.password, undefined);
  assert.equal(auth.record.tokenKey, undefined);
});

check('a wrong password is a 400 ClientResponseError', async () => {
  const other = new PocketBase(process.env.BASALT_URL);
  await assert.rejects(other.collection('_superusers').authWithPassword(process.env.EMAIL, 'wrong-password'),
    (e) => e.status === 400 && e.response.message === 'Failed to authenticate.');
});

check('getList with a filter', async () => {
  const list = await pb.collections.getList(1, 10, { filter: "name ~ 'user'" });
  assert.deepEqual(list.items.map((c) => c.name), ['_superusers', 'users']);
  assert.equal(list.totalItems, 2);
  assert.equal(list.page, 1);
});

let posts;
check('create', async () => {
  posts = await pb.collections.create({
    name: 'posts', listRule: '',
    fields: [{ name: 'title', type: 'text', required: true }],
  });
  assert.deepEqual(posts.fields.map((f) => f.name), ['id', 'title', 'created', 'updated']);
  assert.equal(posts.listRule, '');
});

check('update', async () => {
  const updated = await pb.collections.update(posts.id, {
    listRule: null, fields: [...posts.fields, { name: 'views', type: 'number' }],
  });
  assert.equal(updated.listRule, null);
  assert.equal(updated.fields.length, 5);
});

check('getOne, getFullList, getFirstListItem', async () => {
  assert.equal((await pb.collections.getOne('posts')).id, posts.id);
  assert.equal((await pb.collections.getFullList()).length, 3);
  assert.equal((await pb.collections.getFirstListItem("name = 'users'")).name, 'users');
});

check('import', async () => {
  const current = await pb.collections.getOne('posts');
  await pb.collections.import([current, { name: 'tags' }], false);
  const names = (await pb.collections.getFullList()).map((c) => c.name).sort();
  assert.deepEqual(names, ['_superusers', 'posts', 'tags', 'users']);
});

check('validation errors have the PocketBase shape', async () => {
  await assert.rejects(pb.collections.create({ name: 'Bad Name' }),
    (e) => e.status === 400 && e.response.data.name.code === 'validation_invalid_name');
});

check('delete', async () => {
  assert.equal(await pb.collections.delete('tags'), true);
  await assert.rejects(pb.collections.getOne('tags'), (e) => e.status === 404);
});

check('a user may not touch collections', async () => {
  const anonymous = new PocketBase(process.env.BASALT_URL);
  await assert.rejects(anonymous.collections.getList(), (e) => e.status === 401);
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
