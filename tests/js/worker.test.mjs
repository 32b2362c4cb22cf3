// The wasm client in Cloudflare's workerd (through Miniflare's API, with the options examples/worker's
// `npm run dev` uses): examples/worker, where a Durable Object holds the tunnel, against a real server
// on loopback. A visitor's request and a visitor's WebSocket reach the Worker's handlers; `/start` with
// another subdomain is refused while the tunnel runs; and an evicted object (its Miniflare disposed, a new
// one started on the same persisted storage) serves again under the same name.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { loadMiniflare, options } from '../../examples/worker/miniflare.mjs';
import { checkTunnel, nameOf, requirePkg, startServer, uniqueName, visit } from './helpers.mjs';

requirePkg();
const { Miniflare } = loadMiniflare();

let server;
before(async () => {
  // A long grace hold: after the eviction only the reconnect token can get the name back.
  server = await startServer(['--grace-period', '600']);
});
after(async () => {
  await server?.stop();
});

test('examples/worker in workerd: a Durable Object holds the tunnel', { timeout: 120_000 }, async () => {
  const mf = new Miniflare(options({ server: server.url }));
  try {
    const name = uniqueName('worker');
    const started = await mf.dispatchFetch(`http://localhost/start?subdomain=${name}`);
    const body = await started.json();
    assert.equal(started.status, 200, JSON.stringify(body));
    await checkTunnel(assert, server, body.url, 'workerd');

    // Running: the same subdomain (or none) gets the URL, another one is refused.
    const again = await (await mf.dispatchFetch(`http://localhost/start?subdomain=${name}`)).json();
    assert.equal(again.url, body.url);
    const other = await mf.dispatchFetch('http://localhost/start?subdomain=something-else');
    assert.equal(other.status, 409);
    assert.match((await other.json()).error, /already running as/);
    await (await mf.dispatchFetch('http://localhost/stop')).json();
  } finally {
    await mf.dispose();
  }
});

test('an evicted Durable Object gets its tunnel and its name back', { timeout: 120_000 }, async () => {
  const persist = fs.mkdtempSync(path.join(os.tmpdir(), 'localtunnels-worker-'));
  const name = uniqueName('evict');
  let mf = new Miniflare(options({ server: server.url, persist }));
  try {
    const started = await mf.dispatchFetch(`http://localhost/start?subdomain=${name}`);
    const { url } = await started.json();
    assert.equal(nameOf(url), name);
    assert.equal((await visit(server, name, '/whoami')).status, 200);

    // Eviction: the runtime goes away with the object and its WebSocket, without a goodbye.
    await mf.dispose();
    mf = null;
    const gone = await visit(server, name, '/whoami');
    assert.equal(gone.status, 503, 'the server holds the name for the dropped connection');

    // A new runtime on the same storage: the object wakes on its next request, reopens the tunnel and
    // presents the stored reconnect token, which takes the held name back at once.
    mf = new Miniflare(options({ server: server.url, persist }));
    const status = await (await mf.dispatchFetch('http://localhost/status')).json();
    assert.equal(status.running, true, JSON.stringify(status));
    const restarted = await (await mf.dispatchFetch('http://localhost/start')).json();
    assert.equal(restarted.url, url, JSON.stringify(restarted));
    const back = await visit(server, name, '/whoami');
    assert.equal(back.status, 200, back.body);
    assert.equal(JSON.parse(back.body).runtime, 'workerd');
    await (await mf.dispatchFetch('http://localhost/stop')).json();
  } finally {
    await mf?.dispose();
    fs.rmSync(persist, { recursive: true, force: true });
  }
});
