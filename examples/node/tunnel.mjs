// A Node program as the origin of a public URL, with no native binary.
//
//   node examples/node/tunnel.mjs [SERVER_URL] [--subdomain NAME] [--forward http://localhost:8000]
//
// SERVER_URL defaults to $LOCALTUNNELS_SERVER or http://localhost:3000 (`localtunnels server` prints it).
// Without --forward it serves a small app: GET /whoami describes the request, POST /echo streams the body
// back, and WebSockets echo. With --forward every request goes to that local server instead.
// The first line on stdout is the public URL; the request log goes to stderr.
//
// Node 22 has a global WebSocket. Node 20 needs `--experimental-websocket`, or the `ws` package, which
// this program picks up when it is installed. Build the package first: scripts/build-wasm. In a project
// of your own, `npm i localtunnels` and import from 'localtunnels'.

import init, { TunnelClient, forward } from '../../pkg/node/index.mjs';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};
const subdomain = flag('--subdomain');
const forwardTo = flag('--forward');
const server = new URL(args[0] ?? process.env.LOCALTUNNELS_SERVER ?? 'http://localhost:3000');

if (!globalThis.WebSocket) {
  try {
    globalThis.WebSocket = (await import('ws')).WebSocket;
  } catch {
    console.error('This Node has no global WebSocket: use Node 22, run with --experimental-websocket, or npm i ws');
    process.exit(1);
  }
}

await init();
const client = new TunnelClient({ server: server.href, subdomain });

client.onRequest(forwardTo ? forward(forwardTo) : app);
client.onWebSocket((socket) => {
  socket.onmessage = (e) => socket.send(e.data);
});
client.on('response', (r) => console.error(`${r.status} ${r.method} ${r.url} ${Math.round(r.duration)} ms`));
client.on('connected', ({ url }) => console.error(`connected: ${url}`));
client.on('reconnecting', (r) => console.error(`connection lost; retry ${r.attempt} in ${r.delay} ms`));
client.on('error', (e) => console.error(`error: ${e.message}`));

// Ctrl-C: tell the server we are leaving (it frees the name at once), then let Node exit by itself: once
// the tunnel is closed nothing holds the process open.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await client.close();
    console.error('closed');
  });
}
try {
  console.log(await client.connect());
} catch (e) {
  console.error(`could not open the tunnel (${e.reason}): ${e.message}`);
  process.exit(1);
}

async function app(request) {
  const url = new URL(request.url);
  if (url.pathname === '/echo') {
    return new Response(request.body, { headers: { 'content-type': request.headers.get('content-type') ?? 'text/plain' } });
  }
  if (url.pathname === '/whoami') {
    const info = { runtime: 'node', version: process.version, method: request.method, url: request.url, headers: Object.fromEntries(request.headers) };
    return Response.json(info);
  }
  return new Response(`Hello from Node ${process.version}, through localtunnels.\n`);
}
