// The wasm client's `hostname` option (a custom hostname instead of a name under the server's domain),
// in Node with `ws` as the global WebSocket, against a real server whose tokens file grants it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { nodePkg, startServer, useWsAsGlobalWebSocket, WebSocket } from './helpers.mjs';

const { TunnelClient } = nodePkg();

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lt-js-hostname-'));
const tokens = path.join(dir, 'tokens');
fs.writeFileSync(tokens, 'js-secret app.example.test\n');
useWsAsGlobalWebSocket();
let server;
before(async () => {
  server = await startServer(['--tokens-file', tokens]);
});
after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function get(host, target) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, path: target, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a granted hostname is routed by its exact Host', async () => {
  const client = new TunnelClient({
    host: 'localhost',
    port: server.port,
    token: 'js-secret',
    hostname: 'App.Example.test',
    onRequest: (request) => new Response(`hostname ${new URL(request.url).pathname}`),
  });
  const url = await client.connect();
  try {
    assert.equal(url, `http://app.example.test:${server.port}`);
    assert.deepEqual(await get('app.example.test', '/js'), { status: 200, body: 'hostname /js' });
  } finally {
    client.close();
  }
});

test('an ungranted hostname rejects connect() with hostname_not_allowed', async () => {
  const client = new TunnelClient({ host: 'localhost', port: server.port, token: 'js-secret', hostname: 'other.example.test' });
  await assert.rejects(client.connect(), (e) => e.reason === 'hostname_not_allowed');
});

test('hostname and subdomain together, or a hostname of one label, are refused at once', () => {
  assert.throws(() => new TunnelClient({ host: 'localhost', hostname: 'a.example.test', subdomain: 'a' }), /either/);
  assert.throws(() => new TunnelClient({ host: 'localhost', hostname: 'localhost' }), /hostname/);
});
