// The wasm client's benchmark origin: headless Chromium (playwright-core from .tools/js driving Debian's
// /usr/bin/chromium) opens a page that loads pkg/localtunnels.js, connects a TunnelClient to the server and
// answers every request with a 1 KiB body. Prints `ready <public URL>` once the tunnel is up, then serves
// until SIGTERM/SIGINT or until its parent dies (then it closes the browser).
//
//   node bench/wasm-chromium.mjs SERVER_PORT NAME
//
// With CPU_PROFILE=FILE it also records the tab's CPU profile (Chrome DevTools protocol) from `ready` until
// it is stopped, writes it to FILE (open it in DevTools' Performance panel) and prints the functions with
// the most samples on stderr.
//
// Needs pkg/ (scripts/build-wasm) and .tools/js (scripts/setup). Used by `localtunnels-bench`.
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = path.join(ROOT, 'pkg');
const [port, name] = [Number(process.argv[2]), process.argv[3] ?? 'wasm'];
if (!port) {
  console.error('usage: node bench/wasm-chromium.mjs SERVER_PORT NAME');
  process.exit(2);
}
for (const f of ['localtunnels.js', 'localtunnels_bg.wasm']) {
  if (!fs.existsSync(path.join(PKG, f))) {
    console.error(`pkg/${f} is missing: run scripts/build-wasm first`);
    process.exit(3);
  }
}
const { chromium } = createRequire(path.join(ROOT, '.tools/js/package.json'))('playwright-core');

const PAGE = `<!doctype html><meta charset=utf-8><title>bench</title><script type=module>
import init, { TunnelClient } from '/pkg/localtunnels.js';
await init();
const body = new Uint8Array(1024).fill(97);
const headers = { 'content-type': 'application/octet-stream' };
const client = new TunnelClient({ host: '127.0.0.1', port: ${port}, subdomain: ${JSON.stringify(name)} });
client.onRequest(() => new Response(body, { headers }));
client.connect().then((url) => { window.ready = url; }, (e) => { window.failed = String(e && e.message || e); });
</script>`;

const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm' };
const site = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://x');
  if (pathname === '/') return res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
  const file = path.resolve(PKG, pathname.replace(/^\/pkg\//, ''));
  if (!pathname.startsWith('/pkg/') || !file.startsWith(PKG + path.sep) || !fs.existsSync(file)) {
    return res.writeHead(404).end();
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  // This script closes the browser itself (after saving a profile).
  handleSIGTERM: false,
  handleSIGINT: false,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'],
});
let closing = false;
let profiler;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  if (profiler) await saveProfile(profiler).catch((e) => console.error(`profile: ${e.message}`));
  await browser.close().catch(() => {});
  site.close();
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
const parent = process.ppid;
setInterval(() => {
  try {
    process.kill(parent, 0);
  } catch {
    shutdown(0);
  }
}, 500).unref();

const page = await browser.newPage();
page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
await page.goto(`http://127.0.0.1:${site.address().port}/`);
const handle = await page.waitForFunction(() => window.ready || window.failed, null, { timeout: 30_000 });
const result = await handle.jsonValue();
const failed = await page.evaluate(() => window.failed);
if (failed) {
  console.error(`connect failed: ${failed}`);
  await shutdown(1);
}
if (process.env.CPU_PROFILE) {
  profiler = await page.context().newCDPSession(page);
  await profiler.send('Profiler.enable');
  await profiler.send('Profiler.setSamplingInterval', { interval: 200 });
  await profiler.send('Profiler.start');
}
console.log(`ready ${result}`);
// Report the renderer's memory now and then on stderr (useful next to the request rate).
setInterval(async () => {
  const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize).catch(() => undefined);
  if (heap) console.error(`js heap ${(heap / 1048576).toFixed(1)} MiB`);
}, 5000).unref();

/** Stops the profiler, writes the profile and prints the top functions by self samples. */
async function saveProfile(cdp) {
  const { profile } = await cdp.send('Profiler.stop');
  fs.writeFileSync(process.env.CPU_PROFILE, JSON.stringify(profile));
  const self = new Map();
  let total = 0;
  for (const n of profile.nodes) {
    const f = n.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url ? path.basename(f.url) : ''}`.trim();
    self.set(key, (self.get(key) ?? 0) + (n.hitCount ?? 0));
    total += n.hitCount ?? 0;
  }
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 30);
  console.error(`cpu profile: ${total} samples, written to ${process.env.CPU_PROFILE}`);
  for (const [k, v] of top) console.error(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
}
