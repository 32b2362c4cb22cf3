// www/ end to end: headless Chromium (playwright-core driving Debian's /usr/bin/chromium) opens the page,
// which connects to a real server; the test reads the public URL off the page, edits the JSON in the
// tab, fetches both endpoints from outside the browser, checks the answers and the page's request log
// (client.requests(), a row's detail, replay),
// and saves a screenshot to target/screenshots/www.png.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, nameOf, requirePkg, startServer, toolRequire, visit } from './helpers.mjs';
import { serve } from '../../www/serve.mjs';

requirePkg();
const { chromium } = toolRequire('playwright-core');

let server;
let site;
let browser;
before(async () => {
  server = await startServer();
  site = await serve(0);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  site?.close();
  await server?.stop();
});

test('the page serves its app from the tab and logs what it served', async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));

  const query = new URLSearchParams({ server: server.url, subdomain: 'my-tab', connect: '' });
  await page.goto(`http://127.0.0.1:${site.address().port}/?${query}`);
  const link = page.locator('#public-url');
  await link.filter({ hasText: /^http:/ }).waitFor({ timeout: 15_000 }).catch(async () => {
    throw new Error(`no public URL; status: ${await page.locator('#status').textContent()}; ${problems.join('; ')}`);
  });
  const publicUrl = await link.textContent();
  assert.equal(publicUrl, `http://my-tab.localhost:${server.port}`);
  assert.match(await page.locator('#status').textContent(), /^Connected/);

  // The person edits the JSON in the tab; visitors get the new content at once.
  await page.locator('#data-json').fill('{ "message": "edited in the tab", "n": 42 }');
  const name = nameOf(publicUrl);
  const data = await visit(server, name, '/api/data?from=outside');
  assert.equal(data.status, 200, data.body);
  assert.equal(data.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(data.body), { message: 'edited in the tab', n: 42 });

  const home = await visit(server, name, '/');
  assert.equal(home.status, 200);
  assert.match(home.headers['content-type'], /^text\/html/);
  assert.match(home.body, /served by a browser tab/);
  assert.equal((await visit(server, name, '/nope')).status, 404);

  // The log shows what was served, newest first.
  const row = page.locator('#log tr[data-path="/api/data?from=outside"]');
  await row.waitFor();
  assert.equal(await row.getAttribute('data-status'), '200');
  assert.equal(await row.locator('td').nth(1).textContent(), 'GET');
  assert.equal(await page.locator('#log tr').count(), 3);

  // The log is client.requests(): a row shows its record, and Replay answers it again in the tab.
  await row.click();
  assert.match(await page.locator('#log-detail').textContent(), /^request\nGET \/api\/data\?from=outside HTTP\/1\.1/);
  await row.locator('button.replay-button').click();
  await page.locator('#log tr.replay').waitFor();
  assert.equal(await page.locator('#log tr').count(), 4);

  const shots = path.join(ROOT, 'target/screenshots');
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, 'www.png'), fullPage: true });
  assert.deepEqual(problems, []);
  await page.close();
});
