// Shared by the JavaScript end-to-end tests: a real localtunnels server on a free port, visitors that
// reach a tunnel through it (HTTP with node:http, WebSockets with `ws`), and child processes whose first
// stdout line is a URL.
//
// Needs: target/debug/localtunnels (cargo build), pkg/ (scripts/build-wasm) and the JS tools in .tools/js
// (scripts/setup).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TOOLS = path.join(ROOT, '.tools/js');
/** `require` for the packages of .tools/js (ws, miniflare, playwright-core). */
export const toolRequire = createRequire(path.join(TOOLS, 'package.json'));
export const WebSocket = toolRequire('ws');

/** A program from .tools/js/node_modules/.bin. */
export function tool(name) {
  const p = path.join(TOOLS, 'node_modules/.bin', name);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run scripts/setup`);
  return p;
}

/** Fails early, with the fix, when pkg/ was not built. */
export function requirePkg() {
  for (const f of ['pkg/localtunnels.js', 'pkg/localtunnels_bg.wasm', 'pkg/node/localtunnels.js']) {
    if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run scripts/build-wasm first`);
  }
}

/** The npm package's Node build (pkg/node, CommonJS, instantiated synchronously): `{ TunnelClient, forward, ... }`. */
export function nodePkg() {
  requirePkg();
  return createRequire(import.meta.url)(path.join(ROOT, 'pkg/node/localtunnels.js'));
}

/**
 * Makes `ws` the global WebSocket (the one the wasm client uses) for the tests of the enclosing suite: call it
 * at a file's top level or inside a `describe`. The previous global (Node 20 has none) comes back afterwards.
 */
export function useWsAsGlobalWebSocket() {
  let saved;
  before(() => {
    saved = globalThis.WebSocket;
    globalThis.WebSocket = WebSocket;
  });
  after(() => {
    globalThis.WebSocket = saved;
  });
}

/** A unique tunnel name for this test run. */
export function uniqueName(prefix) {
  return `${prefix}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
}

/**
 * Starts a child process and resolves once it prints its first stdout line, which is returned. A child
 * that exits first rejects with its stderr.
 */
export async function spawnUntilLine(cmd, args, options = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout });
  const exited = once(child, 'exit').then(([code, signal]) => {
    throw new Error(`${path.basename(cmd)} exited (${code ?? signal}) before printing a line:\n${stderr}`);
  });
  const [line] = await Promise.race([once(lines, 'line'), exited]);
  exited.catch(() => {});
  lines.on('line', (l) => process.env.LOCALTUNNELS_TEST_VERBOSE && console.error(`[${path.basename(cmd)}] ${l}`));
  return {
    child,
    line: line.trim(),
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    },
  };
}

/** `target/debug/localtunnels server --port 0` (unless `extraArgs` name a port); resolves with its URL and port. */
export async function startServer(extraArgs = []) {
  const exe = path.join(ROOT, 'target/debug/localtunnels');
  if (!fs.existsSync(exe)) throw new Error(`${exe} is missing: run cargo build --bin localtunnels first`);
  const port = extraArgs.includes('--port') ? [] : ['--port', '0'];
  const proc = await spawnUntilLine(exe, ['server', ...port, ...extraArgs], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  const url = new URL(proc.line);
  return { ...proc, url: proc.line, host: url.hostname, port: Number(url.port) };
}

/** The tunnel name in a public URL such as `http://demo.localhost:3000`. */
export function nameOf(publicUrl) {
  return new URL(publicUrl).hostname.split('.')[0];
}

/**
 * A visitor's HTTP request to tunnel `name` through `server`: connects to 127.0.0.1 and sets the Host
 * header, since `<name>.localhost` does not resolve everywhere.
 */
export function visit(server, name, target, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: server.port,
        path: target,
        method,
        headers: { host: `${name}.localhost:${server.port}`, ...headers },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, raw: res.rawHeaders, body: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A visitor's WebSocket to tunnel `name`, with a promise-based reader. */
export async function visitWs(server, name, target, protocols = []) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}${target}`, protocols, {
    headers: { host: `${name}.localhost:${server.port}` },
  });
  const queue = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const m = { data: isBinary ? data : data.toString(), isBinary };
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket refused with ${res.statusCode}`)));
  });
  return {
    ws,
    protocol: ws.protocol,
    send: (d) => ws.send(d),
    next: () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r))),
    async close(code = 1000) {
      const closed = once(ws, 'close');
      ws.close(code);
      const [c] = await closed;
      return c;
    },
  };
}

/**
 * The checks every runtime passes: its `/whoami` sees the visitor's request, `/echo` streams a body
 * back, and a WebSocket echoes text and binary messages.
 */
export async function checkTunnel(assert, server, publicUrl, runtime) {
  const name = nameOf(publicUrl);
  assert.match(publicUrl, new RegExp(`^http://${name}\\.localhost:${server.port}$`));

  const who = await visit(server, name, '/whoami?x=1', { headers: { 'x-visitor': 'yes' } });
  assert.equal(who.status, 200, who.body);
  const seen = JSON.parse(who.body);
  assert.equal(seen.runtime, runtime);
  assert.equal(seen.method, 'GET');
  assert.equal(seen.url, `${publicUrl}/whoami?x=1`);
  assert.equal(seen.headers['x-visitor'], 'yes');

  const echo = await visit(server, name, '/echo', { method: 'POST', body: 'ping over http' });
  assert.equal(echo.status, 200, echo.body);
  assert.equal(echo.body, 'ping over http');

  const ws = await visitWs(server, name, '/ws', ['echo.v1']);
  assert.equal(ws.protocol, 'echo.v1');
  ws.send('hello');
  assert.deepEqual(await ws.next(), { data: 'hello', isBinary: false });
  ws.send(Buffer.from([1, 2, 3]));
  const bin = await ws.next();
  assert.equal(bin.isBinary, true);
  assert.deepEqual([...bin.data], [1, 2, 3]);
  assert.equal(await ws.close(1000), 1000);
}

/** Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core from .tools/js. */
export function launchChromium() {
  const { chromium } = toolRequire('playwright-core');
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
