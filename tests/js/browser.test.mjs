// The wasm client in headless Chromium against a real server on loopback: starts the server, then runs
// crates/wasm/tests/e2e.rs with `wasm-pack test --headless --chrome` (Debian's chromium + chromedriver),
// where a tab opens the tunnel and the same page visits it over HTTP and WebSocket.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, TOOLS, startServer } from './helpers.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('a browser tab answers HTTP and WebSocket visitors (wasm-pack test --chrome)', async () => {
  const args = ['test', '--headless', '--chrome', '--mode', 'no-install', 'crates/wasm', '--features', 'e2e', '--test', 'e2e'];
  const child = spawn('wasm-pack', args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      LOCALTUNNELS_E2E_SERVER: server.url,
      PATH: `${path.join(TOOLS, 'node_modules/.bin')}:${process.env.HOME}/.cargo/bin:${process.env.PATH}`,
    },
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const [code] = await once(child, 'exit');
  const ran = output.match(/test result: ok\. (\d+) passed/);
  assert.ok(code === 0 && ran && Number(ran[1]) > 0, `wasm-pack test failed (exit ${code}):\n${output.slice(-6000)}`);
});
