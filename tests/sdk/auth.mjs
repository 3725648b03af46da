// The official PocketBase JS SDK's auth calls against Basalt: sign-up, password
// auth, refresh, auth methods, verification and password reset with the links read
// from the mails Basalt stores (no SMTP configured). Run by tests/tests/api/sdk.rs.
import assert from 'node:assert/strict';
import PocketBase from 'pocketbase';

const url = process.env.BASALT_URL;
const admin = new PocketBase(url);
const pb = new PocketBase(url);
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

// The token in the newest stored mail to `to` of `kind`, waiting for it to arrive.
async function mailToken(to, kind) {
  for (let i = 0; i < 200; i++) {
    const page = await admin.send('/api/mails', { query: { perPage: 100 } });
    const mail = page.items.find((m) => m.to === to && m.kind === kind);
    if (mail) return mail.body.match(/\/_\/#\/auth\/confirm-[a-z-]+\/([^"]+)/)[1];
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no ${kind} mail to ${to}`);
}

check('sign up and sign in', async () => {
  await admin.collection('_superusers').authWithPassword(process.env.EMAIL, process.env.PASSWORD);
  const user = await pb.collection('users').create({
    email: 'cy@example.com', password: 'cy-password', passwordConfirm: 'cy-password', name: 'Cy',
  });
  assert.equal(user.verified, false);
  const auth = await pb.collection('users').authWithPassword('cy@example.com', 'cy-password');
  assert.equal(auth.record.id, user.id);
  assert.ok(pb.authStore.isValid);
});

check('wrong passwords fail the same way for unknown accounts', async () => {
  const failure = async (identity) => {
    try {
      await new PocketBase(url).collection('users').authWithPassword(identity, 'wrong-password');
    } catch (e) {
      return [e.status, JSON.stringify(e.response)];
    }
    throw new Error('signed in with a wrong password');
  };
  assert.deepEqual(await failure('cy@example.com'), await failure('nobody@example.com'));
});

check('auth methods and refresh', async () => {
  const methods = await pb.collection('users').listAuthMethods();
  assert.equal(methods.password.enabled, true);
  assert.deepEqual(methods.password.identityFields, ['email']);
  const before = pb.authStore.token;
  await new Promise((r) => setTimeout(r, 1100)); // a later `exp`, so a different token
  const refreshed = await pb.collection('users').authRefresh();
  assert.equal(refreshed.record.email, 'cy@example.com');
  assert.notEqual(pb.authStore.token, before);
});

check('verification through the stored mail', async () => {
  assert.equal(await pb.collection('users').requestVerification('cy@example.com'), true);
  const token = await mailToken('cy@example.com', 'verification');
  assert.equal(await pb.collection('users').confirmVerification(token), true);
  await pb.collection('users').authRefresh();
  assert.equal(pb.authStore.record.verified, true);
  await assert.rejects(pb.collection('users').confirmVerification(token), (e) => e.status === 400);
});

check('password reset through the stored mail', async () => {
  const old = pb.authStore.token;
  assert.equal(await pb.collection('users').requestPasswordReset('cy@example.com'), true);
  assert.equal(await pb.collection('users').requestPasswordReset('nobody@example.com'), true);
  const token = await mailToken('cy@example.com', 'passwordReset');
  assert.equal(await pb.collection('users').confirmPasswordReset(token, 'cy-new-password', 'cy-new-password'), true);
  await assert.rejects(
    pb.collection('users').confirmPasswordReset(token, 'cy-newer-password', 'cy-newer-password'),
    (e) => e.status === 400,
  );
  await assert.rejects(pb.collection('users').authWithPassword('cy@example.com', 'cy-password'), (e) => e.status === 400);
  await pb.collection('users').authWithPassword('cy@example.com', 'cy-new-password');
  const stale = new PocketBase(url);
  stale.authStore.save(old, null);
  await assert.rejects(stale.collection('users').authRefresh(), (e) => e.status === 401);
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
