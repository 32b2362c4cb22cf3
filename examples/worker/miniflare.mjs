// The Miniflare options that run this Worker in workerd, shared by `npm run dev` (dev.mjs) and the tests
// (tests/js/worker.test.mjs). Miniflare comes from the tools scripts/setup installs (.tools/js), or from
// this project's own node_modules when it has one.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');

/** Miniflare's module: `npm i miniflare` here, else the one in .tools/js. */
export function loadMiniflare() {
  for (const base of [path.join(HERE, 'package.json'), path.join(ROOT, '.tools/js/package.json')]) {
    try {
      return createRequire(base)('miniflare');
    } catch {}
  }
  throw new Error('miniflare is not installed: run scripts/setup (or npm i miniflare in examples/worker)');
}

/**
 * Options for `new Miniflare(...)`: `server` is the tunnel server's URL, `persist` a directory that keeps
 * the Durable Object's storage (its tunnel's subdomain and reconnect token) across restarts.
 */
export function options({ server, persist, port }) {
  return {
    modules: true,
    scriptPath: path.join(HERE, 'src/index.js'),
    modulesRoot: ROOT,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2025-01-01',
    durableObjects: { TUNNEL: 'Tunnel' },
    bindings: { TUNNEL_SERVER: server },
    ...(persist ? { durableObjectsPersist: persist } : {}),
    ...(port !== undefined ? { host: '127.0.0.1', port } : {}),
  };
}
