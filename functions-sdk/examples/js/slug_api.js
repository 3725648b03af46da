// A Basalt function in JavaScript, for the `function` world of basalt:functions@0.1.0:
// - before a post is created, fill its `slug` from its `title` when it has none;
// - `GET /api/functions/{name}/latest` answers the caller's three newest posts
//   (read as the caller: the collection's rules apply, as over REST).
//
// Build: npm install && npm run build   (→ slug_api.wasm)
// Deploy: basalt functions deploy slug_api.wasm --name slug-js \
//           --trigger posts.before-create --trigger http

import { write as log } from 'basalt:functions/log@0.1.0';
import { list } from 'basalt:functions/records@0.1.0';
import { caller } from 'basalt:functions/context@0.1.0';
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.12';

const encoder = new TextEncoder();

function slugify(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, '');
}

export const hooks = {
  beforeCreate(write) {
    const values = JSON.parse(write.values);
    if (values.slug) {
      return { tag: 'unchanged' };
    }
    values.slug = slugify(values.title ?? '');
    log('info', 'slug filled', [['slug', values.slug]]);
    return { tag: 'changed', val: JSON.stringify(values) };
  },
  beforeUpdate() {
    return { tag: 'unchanged' };
  },
  beforeDelete() {
    return { tag: 'unchanged' };
  },
};

function send(responseOut, status, body) {
  const bytes = encoder.encode(JSON.stringify(body));
  const response = new OutgoingResponse(
    Fields.fromList([['content-type', encoder.encode('application/json')]]),
  );
  response.setStatusCode(status);
  const outgoing = response.body();
  ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
  const stream = outgoing.write();
  for (let i = 0; i < bytes.length; i += 4096) {
    stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
  }
  stream[Symbol.dispose]();
  OutgoingBody.finish(outgoing, undefined);
}

export const incomingHandler = {
  handle(request, responseOut) {
    const path = request.pathWithQuery() ?? '/';
    if (!path.startsWith('/latest')) {
      send(responseOut, 404, { message: 'Try GET /latest.' });
      return;
    }
    try {
      const page = list('caller', 'posts', { sort: '-created', page: 1, perPage: 3 });
      const who = caller();
      send(responseOut, 200, {
        caller: who.tag === 'user' ? `${who.val.collection}/${who.val.id}` : who.tag,
        total: Number(page.totalItems),
        titles: page.items.map((item) => JSON.parse(item).title),
      });
    } catch (e) {
      const error = e.payload ?? { status: 500, code: 'internal', message: String(e) };
      send(responseOut, error.status, { code: error.code, message: error.message });
    }
  },
};
