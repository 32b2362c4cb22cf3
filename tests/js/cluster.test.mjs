// The wasm client's `servers: [...]` against two cluster nodes sharing names through a real
// redis-server (docs/CLUSTER.md): a visitor reaches the client through the node it is not connected
// to, and after that node is killed (SIGKILL) the client takes its name back on the other node.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { nodePkg, startServer, uniqueName, useWsAsGlobalWebSocket, visit } from './helpers.mjs';

const { TunnelClient } = nodePkg();

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lt-js-cluster-'));
const sock = path.join(dir, 'redis.sock');
let redis;

function ping() {
  try {
    return execFileSync('redis-cli', ['-s', sock, 'ping'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() === 'PONG';
  } catch {
    return false;
  }
}

useWsAsGlobalWebSocket();
before(async () => {
  redis = spawn('redis-server', ['--port', '0', '--unixsocket', sock, '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 30_000;
  while (!ping()) {
    assert.ok(Date.now() < deadline, 'redis-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(() => {
  redis?.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('servers: [...] are one cluster: forwarded visitors, and the name survives its node', async () => {
  const cluster = ['--cluster', `redis+unix://${sock}`, '--cluster-secret', 'js-secret', '--grace-period', '600'];
  const a = await startServer([...cluster, '--node-id', 'js-a']);
  const b = await startServer([...cluster, '--node-id', 'js-b']);
  const name = uniqueName('cluster');
  const client = new TunnelClient({ servers: [`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`], subdomain: name });
  client.onRequest(() => new Response('from the handler'));
  try {
    const url = await client.connect();
    assert.equal(new URL(url).port, String(a.port), 'the first server is tried first');
    // Through node B, which forwards to node A.
    const through = await visit(b, name, '/');
    assert.deepEqual([through.status, through.body], [200, 'from the handler']);

    await a.stop();
    // The client moves to node B with its reconnect token; until then visitors get 503.
    const deadline = Date.now() + 20_000;
    let answer = await visit(b, name, '/');
    while (answer.status !== 200) {
      assert.ok([503, 404].includes(answer.status), `${answer.status} ${answer.body}`);
      assert.ok(Date.now() < deadline, 'the name answers again on node B');
      await new Promise((r) => setTimeout(r, 100));
      answer = await visit(b, name, '/');
    }
    assert.equal(answer.body, 'from the handler');
    assert.equal(new URL(client.url).port, String(b.port));
  } finally {
    client.close();
    await a.stop();
    await b.stop();
  }
});

test('servers must be URL strings', () => {
  assert.throws(() => new TunnelClient({ servers: 'http://x' }), /array of URL strings/);
  assert.throws(() => new TunnelClient({ servers: [] }), /at least one/);
  assert.throws(() => new TunnelClient({ servers: ['http://x'], server: 'http://y' }), /not both/);
});
