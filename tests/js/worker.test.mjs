// The wasm client in Cloudflare's workerd (through miniflare): examples/worker, where a Durable Object
// holds the tunnel, against a real server on loopback. A visitor's request and a visitor's WebSocket
// reach the Worker's handlers.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, checkTunnel, requirePkg, startServer, toolRequire, uniqueName } from './helpers.mjs';

requirePkg();
const { Miniflare } = toolRequire('miniflare');

let server;
let mf;
before(async () => {
  server = await startServer();
  mf = new Miniflare({
    modules: true,
    scriptPath: path.join(ROOT, 'examples/worker/src/index.js'),
    modulesRoot: ROOT,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2025-01-01',
    durableObjects: { TUNNEL: 'Tunnel' },
    bindings: { TUNNEL_SERVER: server.url },
  });
});
after(async () => {
  await mf?.dispose();
  await server?.stop();
});

test('examples/worker in workerd: a Durable Object holds the tunnel', async () => {
  const started = await mf.dispatchFetch(`http://localhost/start?subdomain=${uniqueName('worker')}`);
  const body = await started.json();
  assert.equal(started.status, 200, JSON.stringify(body));
  try {
    await checkTunnel(assert, server, body.url, 'workerd');
  } finally {
    await (await mf.dispatchFetch('http://localhost/stop')).json();
  }
});
