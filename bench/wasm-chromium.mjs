// The wasm client's benchmark origin: headless Chromium (Debian's /usr/bin/chromium) opens a page that loads
// pkg/localtunnels.js, connects a TunnelClient to the server and answers every request with a 1 KiB body.
// Prints `ready <public URL>` once the tunnel is up, then serves until SIGTERM/SIGINT or until its parent dies
// (then it closes the browser).
//
//   node bench/wasm-chromium.mjs SERVER_PORT NAME
//
// Chromium is started directly, not through playwright: a playwright-driven page has the DevTools `Network`
// domain enabled, which makes the browser copy every WebSocket message (base64) to the driver, so the browser
// process and node spent about as much CPU per tunneled request as the tab itself, on the same 2 cores.
// Set VIA_PLAYWRIGHT=1 to measure the old way. The page reports `ready`/`failed` to this script's own HTTP
// server; the DevTools protocol (over --remote-debugging-pipe, no domain enabled but what is used) only reads
// the heap size now and then and, with CPU_PROFILE=FILE, records the tab's CPU profile from `ready` until it
// is stopped, writes it to FILE (open it in DevTools' Performance panel) and prints the functions with the
// most samples on stderr.
//
// Needs pkg/ (scripts/build-wasm); VIA_PLAYWRIGHT needs .tools/js (scripts/setup). Used by `localtunnels-bench`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = path.join(ROOT, 'pkg');
const CHROMIUM = '/usr/bin/chromium';
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

const PAGE = `<!doctype html><meta charset=utf-8><title>bench</title><script type=module>
const report = (what, text) => fetch('/' + what, { method: 'POST', body: text });
try {
  const { default: init, TunnelClient } = await import('/pkg/localtunnels.js');
  await init();
  const body = new Uint8Array(1024).fill(97);
  const headers = { 'content-type': 'application/octet-stream' };
  const client = new TunnelClient({ host: '127.0.0.1', port: ${port}, subdomain: ${JSON.stringify(name)} });
  client.onRequest(() => new Response(body, { headers }));
  const url = await client.connect();
  window.ready = url;
  report('ready', url);
} catch (e) {
  window.failed = String((e && e.message) || e);
  report('failed', window.failed);
}
</script>`;

let settle;
const outcome = new Promise((resolve) => (settle = resolve));
const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm' };
const site = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://x');
  if (req.method === 'POST' && (pathname === '/ready' || pathname === '/failed')) {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      res.writeHead(204).end();
      settle({ ok: pathname === '/ready', text });
    });
    return;
  }
  if (pathname === '/') return res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
  const file = path.resolve(PKG, pathname.replace(/^\/pkg\//, ''));
  if (!pathname.startsWith('/pkg/') || !file.startsWith(PKG + path.sep) || !fs.existsSync(file)) {
    return res.writeHead(404).end();
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
const pageUrl = `http://127.0.0.1:${site.address().port}/`;

const ARGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'];

/** The browser, started directly, with a DevTools session on the page over --remote-debugging-pipe. */
async function launchDirect() {
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lt-bench-chromium-'));
  const args = ['--headless', '--hide-scrollbars', '--mute-audio', '--remote-debugging-pipe',
    `--user-data-dir=${profileDir}`, ...ARGS, 'about:blank'];
  const proc = spawn(CHROMIUM, args, { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'], detached: true });
  const [toBrowser, fromBrowser] = [proc.stdio[3], proc.stdio[4]];
  let nextId = 1;
  const pending = new Map();
  let buffered = '';
  fromBrowser.on('data', (chunk) => {
    buffered += chunk.toString('utf8');
    let end;
    while ((end = buffered.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buffered.slice(0, end));
      buffered = buffered.slice(end + 1);
      const waiter = msg.id !== undefined && pending.get(msg.id);
      if (waiter) {
        pending.delete(msg.id);
        if (msg.error) waiter.reject(new Error(msg.error.message));
        else waiter.resolve(msg.result);
      }
    }
  });
  fromBrowser.on('error', () => {});
  toBrowser.on('error', () => {});
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  const { targetInfos } = await send('Target.getTargets');
  const target = targetInfos.find((t) => t.type === 'page');
  const { sessionId } = await send('Target.attachToTarget', { targetId: target.targetId, flatten: true });
  await send('Page.navigate', { url: pageUrl }, sessionId);
  return {
    cdp: (method, params) => send(method, params, sessionId),
    async close() {
      await send('Browser.close').catch(() => {});
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch {}
      fs.rmSync(profileDir, { recursive: true, force: true });
    },
  };
}

/** The browser through playwright, as this script used to run it (its page has `Network` enabled). */
async function launchPlaywright() {
  const { chromium } = createRequire(path.join(ROOT, '.tools/js/package.json'))('playwright-core');
  // This script closes the browser itself (after saving a profile).
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, handleSIGTERM: false, handleSIGINT: false, args: ARGS,
  });
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(pageUrl);
  const session = await page.context().newCDPSession(page);
  return { cdp: (method, params) => session.send(method, params), close: () => browser.close() };
}

const browser = await (process.env.VIA_PLAYWRIGHT ? launchPlaywright() : launchDirect());
let closing = false;
let profiling = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  if (profiling) await saveProfile().catch((e) => console.error(`profile: ${e.message}`));
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

const timeout = setTimeout(() => settle({ ok: false, text: 'the page did not connect within 30 s' }), 30_000);
const result = await outcome;
clearTimeout(timeout);
if (!result.ok) {
  console.error(`connect failed: ${result.text}`);
  await shutdown(1);
}
if (process.env.CPU_PROFILE) {
  await browser.cdp('Profiler.enable');
  await browser.cdp('Profiler.setSamplingInterval', { interval: 200 });
  await browser.cdp('Profiler.start');
  profiling = true;
}
console.log(`ready ${result.text}`);
// Report the renderer's memory now and then on stderr (useful next to the request rate).
setInterval(async () => {
  const heap = await browser
    .cdp('Runtime.evaluate', { expression: 'performance.memory?.usedJSHeapSize', returnByValue: true })
    .then((r) => r.result.value, () => undefined);
  if (heap) console.error(`js heap ${(heap / 1048576).toFixed(1)} MiB`);
}, 5000).unref();

/** Stops the profiler, writes the profile and prints the top functions by self samples. */
async function saveProfile() {
  const { profile } = await browser.cdp('Profiler.stop');
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
