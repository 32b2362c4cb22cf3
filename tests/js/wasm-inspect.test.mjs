// The wasm client's request inspector, against a real server on loopback: `client.requests()` returns the
// agent API's record shape, the `request`/`response` events carry the record id, `client.replay(id)` sends a
// request to the handler again (a new record marked `replay_of`), and the store stays within its bounds.
// In Node (this process, `ws` as the global WebSocket) and in headless Chromium (a page loading pkg/).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  launchChromium,
  nameOf,
  nodePkg,
  ROOT,
  startServer,
  uniqueName,
  useWsAsGlobalWebSocket,
  visit,
  WebSocket,
} from './helpers.mjs';

const { TunnelClient } = nodePkg();

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

describe('in Node', () => {
  useWsAsGlobalWebSocket();

  test('records, record ids on events, replay and bounds', async () => {
    const client = new TunnelClient({ host: 'localhost', port: server.port, subdomain: uniqueName('wasm-insp') });
    const handled = [];
    const events = [];
    client.on('request', (e) => events.push(['request', e.recordId]));
    client.on('response', (e) => events.push(['response', e.recordId, e.status]));
    client.onRequest(async (request) => {
      const body = await request.text();
      handled.push(`${request.method} ${new URL(request.url).pathname} ${body}`);
      return Response.json({ got: body, n: handled.length });
    });
    const url = await client.connect();
    try {
      const res = await visit(server, nameOf(url), '/items?x=1', { method: 'POST', body: 'tea', headers: { 'content-type': 'text/plain' } });
      assert.equal(res.status, 200, res.body);

      const [e] = client.requests();
      assert.match(e.id, /^[0-9a-f]{16}$/);
      assert.equal(e.uri, `/api/requests/http/${e.id}`);
      assert.equal(e.remote_addr, '127.0.0.1');
      assert.ok(e.start.endsWith('Z') && e.duration > 0, JSON.stringify(e));
      assert.deepEqual([e.request.method, e.request.uri, e.request.proto], ['POST', '/items?x=1', 'HTTP/1.1']);
      assert.deepEqual(e.request.headers['Content-Type'], ['text/plain']);
      assert.ok(Buffer.from(e.request.raw, 'base64').toString().endsWith('\r\n\r\ntea'));
      assert.equal(e.response.status_code, 200);
      assert.equal(e.response.status, '200 OK');
      assert.deepEqual(JSON.parse(Buffer.from(e.response.raw, 'base64').toString().split('\r\n\r\n')[1]), { got: 'tea', n: 1 });
      assert.deepEqual(events, [['request', e.id], ['response', e.id, 200]]);

      const replayId = await client.replay(e.id);
      assert.deepEqual(handled, ['POST /items tea', 'POST /items tea']);
      const [r] = client.requests();
      assert.equal(r.id, replayId);
      assert.equal(r.replay_of, e.id);
      assert.equal(r.response.status_code, 200);
      await assert.rejects(client.replay('ffffffffffffffff'), /no captured request/);

      // Bounds: a small store keeps the newest entries within its bytes; bodies past the limit are cut.
      client.inspect({ bodyLimit: 16, maxBytes: 8 * 1024 });
      for (let i = 0; i < 40; i++) {
        assert.equal((await visit(server, nameOf(url), `/n${i}`, { method: 'POST', body: 'x'.repeat(100) })).status, 200);
      }
      const kept = client.requests();
      assert.ok(kept.length > 2 && kept.length < 40, `${kept.length} kept`);
      assert.equal(kept[0].request.uri, '/n39');
      assert.equal(kept[0].request.body_size, 100);
      assert.equal(kept[0].request.truncated, true);
      await assert.rejects(client.replay(kept[0].id), /captured only in part/);
      client.clearRequests();
      assert.deepEqual(client.requests(), []);
    } finally {
      client.close();
    }
  });
});

describe('in Chromium', () => {
  let browser;
  let site;
  before(async () => {
    // pkg/ over HTTP for the page (a file: page cannot fetch its .wasm).
    site = http.createServer((req, res) => {
      const file = req.url === '/' ? null : path.join(ROOT, 'pkg', path.basename(req.url));
      if (!file) {
        res.setHeader('content-type', 'text/html');
        return res.end('<!doctype html><title>wasm inspect</title>');
      }
      const type = file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript';
      fs.readFile(file, (err, data) => (err ? res.writeHead(404).end() : res.writeHead(200, { 'content-type': type }).end(data)));
    });
    await new Promise((r) => site.listen(0, '127.0.0.1', r));
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    site?.close();
  });

  test('records and replay in a tab', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${site.address().port}/`);
    const subdomain = uniqueName('tab-insp');
    const publicUrl = await page.evaluate(async ({ port, subdomain }) => {
      const { default: init, TunnelClient } = await import('/localtunnels.js');
      await init();
      const client = new TunnelClient({ host: 'localhost', port, secure: false, subdomain });
      window.calls = 0;
      client.onRequest(async (request) => {
        window.calls++;
        return new Response(`hello ${await request.text()}`, { headers: { 'content-type': 'text/plain' } });
      });
      window.client = client;
      return client.connect();
    }, { port: server.port, subdomain });
    const res = await visit(server, nameOf(publicUrl), '/hi', { method: 'PUT', body: 'tab' });
    assert.equal(res.body, 'hello tab');
    const result = await page.evaluate(async () => {
      const [e] = window.client.requests();
      const replayId = await window.client.replay(e.id);
      const [r] = window.client.requests();
      return { e, r, replayId, calls: window.calls };
    });
    assert.equal(result.e.request.method, 'PUT');
    assert.equal(result.e.response.status_code, 200);
    assert.ok(atob(result.e.response.raw).endsWith('hello tab'));
    assert.equal(result.calls, 2);
    assert.equal(result.r.id, result.replayId);
    assert.equal(result.r.replay_of, result.e.id);
    await page.evaluate(() => window.client.close());
    await page.close();
  });
});
