// The wasm client's lifecycle under Node 22 with its own global WebSocket (undici's, which fires `error`
// and never `close` when a connection fails), through examples/node/tunnel.mjs in a child process:
//  - an unreachable server: connect() rejects with reason 'unreachable' and the program exits 1,
//  - the server killed and restarted on the same port: the client keeps retrying (its timer holds the
//    process open), reconnects and serves again under the same name,
//  - Ctrl-C: close() resolves, the process ends by itself with code 0, and the name is free at once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';

import { ROOT, nameOf, requirePkg, startServer, tool, uniqueName, visit } from './helpers.mjs';

requirePkg();
const node22 = tool('node');
const example = path.join(ROOT, 'examples/node/tunnel.mjs');

/** A port nothing listens on (bound, then closed). */
async function closedPort() {
  const s = http.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  await once(s, 'close');
  return port;
}

/** examples/node under Node 22; `lines()` waits for a stdout/stderr line matching a pattern. */
function runExample(args) {
  const child = spawn(node22, [example, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const seen = [];
  const waiters = [];
  const exited = once(child, 'exit');
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => {
      if (process.env.LOCALTUNNELS_TEST_VERBOSE) console.error(`[node22 ${child.pid}] ${line}`);
      seen.push(line);
      for (const w of [...waiters]) w();
    });
  }
  return {
    child,
    exited,
    seen,
    /** The first line (since `from`) matching `re`; rejects if the process exits first. */
    async line(re, from = 0) {
      for (;;) {
        const found = seen.slice(from).find((l) => re.test(l));
        if (found) return found;
        if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${re}:\n${seen.join('\n')}`);
        await Promise.race([new Promise((r) => waiters.push(r)), exited]);
        waiters.length = 0;
      }
    },
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

test('Node 22: an unreachable server rejects connect() with reason unreachable, and the program exits', { timeout: 120_000 }, async () => {
  const port = await closedPort();
  const run = runExample([`http://127.0.0.1:${port}`]);
  try {
    const [code] = await run.exited;
    assert.equal(code, 1, run.seen.join('\n'));
    assert.ok(run.seen.some((l) => /could not open the tunnel \(unreachable\)/.test(l)), run.seen.join('\n'));
  } finally {
    run.stop();
  }
});

test('Node 22: the server killed and restarted; the client reconnects and serves again under its name', { timeout: 120_000 }, async () => {
  let server = await startServer();
  const port = server.port;
  const name = uniqueName('n22');
  const run = runExample([server.url, '--subdomain', name]);
  try {
    const url = await run.line(/^http:\/\//);
    assert.equal(nameOf(url), name);
    assert.equal((await visit(server, name, '/')).status, 200);

    await server.stop();
    const mark = run.seen.length;
    await run.line(/retry \d+ in \d+ ms/, mark);
    // The retries go on (a few failed attempts against the dead port) and the process stays up.
    await run.line(/retry 2 in/, mark);
    assert.equal(run.child.exitCode, null);

    server = await startServer(['--port', String(port)]);
    await run.line(/^connected: /, mark);
    const res = await visit(server, name, '/whoami');
    assert.equal(res.status, 200, res.body);
    assert.equal(JSON.parse(res.body).url, `http://${name}.localhost:${port}/whoami`);
  } finally {
    run.stop();
    await server.stop();
  }
});

test('Node 22: Ctrl-C closes the tunnel, the process ends by itself, and the name is free at once', { timeout: 120_000 }, async () => {
  const server = await startServer(['--grace-period', '600']);
  const name = uniqueName('bye');
  try {
    const first = runExample([server.url, '--subdomain', name]);
    await first.line(/^http:\/\//);
    first.child.kill('SIGINT');
    const [code, signal] = await first.exited;
    assert.equal(signal, null, first.seen.join('\n'));
    assert.equal(code, 0, first.seen.join('\n'));
    assert.ok(first.seen.includes('closed'), first.seen.join('\n'));

    // The client said goodbye: the server freed the name instead of holding it for 600 s.
    const second = runExample([server.url, '--subdomain', name]);
    try {
      assert.equal(nameOf(await second.line(/^http:\/\//)), name);
    } finally {
      second.stop();
    }
  } finally {
    await server.stop();
  }
});
