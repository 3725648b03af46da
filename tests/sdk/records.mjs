// The official PocketBase JS SDK against Basalt's record API. Run by
// tests/tests/api/sdk.rs with BASALT_URL, EMAIL and PASSWORD (a superuser) set;
// exits non-zero on the first failed check.
import assert from 'node:assert/strict';
import PocketBase from 'pocketbase';

const url = process.env.BASALT_URL;
const admin = new PocketBase(url);
const ann = new PocketBase(url);
const bob = new PocketBase(url);
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('superuser creates a collection with rules', async () => {
  await admin.collection('_superusers').authWithPassword(process.env.EMAIL, process.env.PASSWORD);
  const owner = 'author = @request.auth.id';
  await admin.collections.create({
    name: 'notes', listRule: `published = true || ${owner}`, viewRule: `published = true || ${owner}`,
    createRule: `@request.auth.id != '' && ${owner}`, updateRule: owner, deleteRule: owner,
    fields: [
      { name: 'title', type: 'text', required: true, max: 100 },
      { name: 'views', type: 'number' },
      { name: 'published', type: 'bool' },
      { name: 'author', type: 'relation', collectionId: '_pb_users_auth_' },
    ],
  });
});

check('users sign up through create and sign in', async () => {
  for (const [pb, name] of [[ann, 'ann'], [bob, 'bob']]) {
    const user = await pb.collection('users').create({
      email: `${name}@example.com`, password: `${name}-password`, passwordConfirm: `${name}-password`, name,
    });
    assert.equal(user.password, undefined);
    await pb.collection('users').authWithPassword(`${name}@example.com`, `${name}-password`);
    assert.equal(pb.authStore.record.id, user.id);
    assert.equal(pb.authStore.isSuperuser, false);
  }
});

let first;
check('create, with the create rule', async () => {
  const me = ann.authStore.record.id;
  first = await ann.collection('notes').create({ title: 'First', views: 3, published: true, author: me });
  await ann.collection('notes').create({ title: 'Draft', views: 1, published: false, author: me });
  await ann.collection('notes').create({ title: 'Second', views: 9, published: true, author: me });
  assert.equal(first.collectionName, 'notes');
  await assert.rejects(bob.collection('notes').create({ title: 'Forged', author: me }), (e) => e.status === 400);
});

check('getList with filter, sort and fields', async () => {
  const list = await bob.collection('notes').getList(1, 10, { filter: 'views > 2', sort: '-views', fields: 'id,title' });
  assert.deepEqual(list.items.map((n) => n.title), ['Second', 'First']);
  assert.deepEqual(Object.keys(list.items[0]).sort(), ['id', 'title']);
  assert.equal(list.totalItems, 2);
});

check('expand, with fields reaching into it, under the users view rule', async () => {
  const mine = await ann.collection('notes').getList(1, 10, {
    filter: "title = 'First'", expand: 'author', fields: 'title,expand.author.name',
  });
  assert.deepEqual(mine.items, [{ title: 'First', expand: { author: { name: 'ann' } } }]);
  // bob may not view ann's user record, so it does not expand for him.
  const his = await bob.collection('notes').getFirstListItem("title = 'First'", { expand: 'author' });
  assert.equal(his.expand?.author, undefined);
});

check('rules decide what is listed and viewed', async () => {
  assert.equal((await ann.collection('notes').getFullList()).length, 3);
  assert.equal((await bob.collection('notes').getFullList()).length, 2);
  const draft = await ann.collection('notes').getFirstListItem("title = 'Draft'");
  await assert.rejects(bob.collection('notes').getOne(draft.id), (e) => e.status === 404);
});

check('update and delete, with their rules', async () => {
  await assert.rejects(bob.collection('notes').update(first.id, { title: 'Mine' }), (e) => e.status === 404);
  const updated = await ann.collection('notes').update(first.id, { title: 'First!' });
  assert.equal(updated.title, 'First!');
  await assert.rejects(bob.collection('notes').delete(first.id), (e) => e.status === 404);
  assert.equal(await ann.collection('notes').delete(first.id), true);
  await assert.rejects(ann.collection('notes').getOne(first.id), (e) => e.status === 404);
});

check('validation errors have the PocketBase shape', async () => {
  await assert.rejects(
    ann.collection('notes').create({ title: '', views: 'lots', author: ann.authStore.record.id }),
    (e) => e.status === 400 && e.response.data.title.code === 'validation_required'
      && e.response.data.views.code === 'validation_invalid_number',
  );
});

check('createBatch runs in one transaction', async () => {
  const me = ann.authStore.record.id;
  const batch = ann.createBatch();
  batch.collection('notes').create({ title: 'B1', author: me });
  batch.collection('notes').create({ title: 'B2', author: me });
  const results = await batch.send();
  assert.deepEqual(results.map((r) => r.status), [200, 200]);
  const failing = ann.createBatch();
  failing.collection('notes').create({ title: 'B3', author: me });
  failing.collection('notes').create({ title: '', author: me });
  await assert.rejects(failing.send(), (e) => e.status === 400);
  const titles = (await ann.collection('notes').getFullList()).map((n) => n.title);
  assert.ok(titles.includes('B1') && titles.includes('B2') && !titles.includes('B3'));
});

check(':each needs at least one element (PocketBase semantics)', async () => {
  await admin.collections.create({
    name: 'tagged', listRule: '', viewRule: '',
    fields: [
      { name: 'label', type: 'text' },
      { name: 'tags', type: 'select', maxSelect: 3, values: ['a', 'b', 'c'] },
    ],
  });
  await admin.collection('tagged').create({ label: 'none', tags: [] });
  await admin.collection('tagged').create({ label: 'only-b', tags: ['b'] });
  await admin.collection('tagged').create({ label: 'mixed', tags: ['a', 'b'] });
  const labels = async (filter) => (await bob.collection('tagged').getFullList({ filter, sort: 'label' }))
    .map((r) => r.label);
  assert.deepEqual(await labels("tags:each = 'b'"), ['only-b']);
  assert.deepEqual(await labels("tags:each != 'a'"), ['only-b']);
  assert.deepEqual(await labels("tags:length = 0"), ['none']);
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
