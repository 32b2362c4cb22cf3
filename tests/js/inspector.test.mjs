// The request inspector's page (served by `localtunnels client` at its inspect address) in headless
// Chromium (playwright-core driving Debian's /usr/bin/chromium): requests made through the tunnel appear
// live, the detail view pretty-prints a JSON body, replay (as captured, and with edits) adds entries and
// reaches the origin; a screenshot is saved to target/screenshots/inspector.png and checked non-blank; a
// WebSocket session shows its messages.
//
// Needs: target/debug/localtunnels (cargo build --bin localtunnels) and playwright-core in .tools/js.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, WebSocket, launchChromium, nameOf, spawnUntilLine, startServer, uniqueName, visit, visitWs } from './helpers.mjs';

let server;
let origin;
let client;
let browser;
let inspectUrl;
let publicUrl;
const seen = [];

/** Resolves with the first match of `re` in the process's stderr, as it arrives. */
function stderrMatch(proc, re) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = proc.stderr().match(re);
      if (m) {
        proc.child.stderr.off('data', check);
        resolve(m);
      }
    };
    proc.child.stderr.on('data', check);
    proc.child.once('exit', () => reject(new Error(`exited before ${re}:\n${proc.stderr()}`)));
    check();
  });
}

before(async () => {
  server = await startServer();
  origin = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, body: Buffer.concat(chunks).toString() });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ hello: 'world', items: [1, 2, 3], url: req.url }));
    });
  });
  // WebSockets to the origin echo every message.
  new WebSocket.Server({ server: origin }).on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  const exe = path.join(ROOT, 'target/debug/localtunnels');
  client = await spawnUntilLine(exe, [
    'client', '--server', server.url, '--local-host', '127.0.0.1', '--local-port', String(origin.address().port),
    '--subdomain', uniqueName('insp'), '--inspect-addr', '127.0.0.1:0',
  ]);
  publicUrl = client.line;
  inspectUrl = (await stderrMatch(client, /inspect: (http:\/\/127\.0\.0\.1:\d+)/))[1];
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await client?.stop();
  origin?.close();
  await server?.stop();
});

/** Distinct colours of a PNG, counted by drawing it on a canvas in the page. */
async function colours(page, png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4 * 7) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return seen.size;
  }, png.toString('base64'));
}

test('requests appear live, JSON is pretty-printed, replay reaches the origin', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  await page.goto(inspectUrl);
  await page.locator('#live.on').waitFor({ timeout: 15_000 });
  assert.match(await page.locator('#tunnel').textContent(), new RegExp(publicUrl.replace(/[.:/]/g, '\\$&')));

  // A request through the tunnel shows up without reloading.
  const name = nameOf(publicUrl);
  const res = await visit(server, name, '/data?x=1', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
  assert.equal(res.status, 200, res.body);
  const row = page.locator('tr.entry', { hasText: '/data?x=1' });
  await row.waitFor({ timeout: 15_000 });
  await row.locator('td', { hasText: '200' }).waitFor();
  const first = page.locator(`tr.entry[data-id="${await row.getAttribute('data-id')}"]`);

  // Its detail: query, headers, and the response's JSON pretty-printed.
  await first.click();
  const json = page.locator('#detail .body.response pre.json');
  await json.waitFor();
  const text = await json.textContent();
  assert.ok(text.includes('\n  "hello": "world"'), text);
  assert.deepEqual(JSON.parse(text), { hello: 'world', items: [1, 2, 3], url: '/data?x=1' });
  assert.match(await page.locator('#detail').textContent(), /Query/);
  assert.ok((await page.locator('#detail .body.request pre.json').textContent()).includes('"a": 1'));

  // Replay: a new entry, marked as a replay, and the origin got the request again.
  await page.locator('#replay').click();
  await page.locator('tr.entry.replay').first().waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('tr.entry').count(), 2);
  assert.equal(seen.length, 2);
  assert.deepEqual(seen[1], { method: 'POST', url: '/data?x=1', body: '{"a":1}' });

  // Replay with edits: another path and body.
  await page.locator('#edit-replay').click();
  await page.locator('#edit input[name=uri]').fill('/edited');
  await page.locator('#edit textarea[name=body]').fill('{"a":2}');
  await page.locator('#edit-send').click();
  await page.locator('tr.entry', { hasText: '/edited' }).waitFor({ timeout: 15_000 });
  assert.deepEqual(seen[2], { method: 'POST', url: '/edited', body: '{"a":2}' });

  // Copy as curl shows the command for the public URL.
  await page.locator('#copy-curl').click();
  assert.match(await page.locator('#curl').textContent(), new RegExp(`^curl -X POST '${publicUrl}/data\\?x=1'`));

  // Filters: a path that matches nothing hides every row.
  await page.locator('#f-path').fill('/nothing-here');
  assert.equal(await page.locator('tr.entry').count(), 0);
  await page.locator('#f-path').fill('');
  assert.equal(await page.locator('tr.entry').count(), 3);

  await first.click();
  const shots = path.join(ROOT, 'target/screenshots');
  fs.mkdirSync(shots, { recursive: true });
  const png = await page.screenshot({ path: path.join(shots, 'inspector.png'), fullPage: true });
  assert.ok(png.length > 10_000, `screenshot of ${png.length} bytes`);
  assert.ok((await colours(page, png)) > 20, 'the screenshot is not blank');
  assert.deepEqual(problems, []);
  await page.close();
});

test('a WebSocket session shows its messages', async () => {
  const page = await browser.newPage();
  await page.goto(inspectUrl);
  await page.locator('#live.on').waitFor({ timeout: 15_000 });
  const ws = await visitWs(server, nameOf(publicUrl), '/socket');
  ws.send('hi there');
  assert.deepEqual(await ws.next(), { data: 'hi there', isBinary: false });
  assert.equal(await ws.close(1000), 1000);

  await page.locator('#f-ws').check();
  const row = page.locator('tr.entry', { hasText: '/socket' });
  await row.waitFor({ timeout: 15_000 });
  assert.equal(await page.locator('tr.entry').count(), 1);
  await row.click();
  const messages = page.locator('#detail .messages');
  await messages.locator('tr.msg.out').waitFor({ timeout: 15_000 });
  const text = await messages.textContent();
  assert.match(text, /visitor .*text, 8 B: hi there/);
  assert.match(text, /origin .*text, 8 B: hi there/);
  await page.close();
});
