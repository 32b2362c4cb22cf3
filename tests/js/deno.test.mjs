// The wasm client with Deno 2 as the origin (examples/deno, the --target web build), against a real
// server on loopback: a visitor's request and a visitor's WebSocket reach its handlers.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, checkTunnel, nameOf, requirePkg, spawnUntilLine, startServer, tool, uniqueName, visit } from './helpers.mjs';

requirePkg();
let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('examples/deno under Deno 2', async () => {
  const deno = tool('deno');
  const script = path.join(ROOT, 'examples/deno/tunnel.ts');
  const proc = await spawnUntilLine(
    deno,
    ['run', '--quiet', '--no-prompt', '--allow-net', '--allow-read', script, server.url, '--subdomain', uniqueName('deno')],
    { env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' } },
  );
  try {
    await checkTunnel(assert, server, proc.line, 'deno');
    const who = JSON.parse((await visit(server, nameOf(proc.line), '/whoami')).body);
    assert.match(who.version, /^2\./);
  } finally {
    await proc.stop();
  }
});

test("the package's TypeScript types check against examples/deno (deno check)", () => {
  const deno = tool('deno');
  const script = path.join(ROOT, 'examples/deno/tunnel.ts');
  execFileSync(deno, ['check', '--quiet', script], { env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' }, stdio: 'pipe' });
});
