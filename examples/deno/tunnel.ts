// A Deno program as the origin of a public URL.
//
//   deno run --allow-net --allow-read examples/deno/tunnel.ts [SERVER_URL] [--subdomain NAME] [--forward URL]
//
// SERVER_URL defaults to http://localhost:3000 (what `localtunnels server` prints). Without --forward it
// serves a small app: GET /whoami describes the request, POST /echo streams the body back, and WebSockets
// echo. `--forward http://localhost:8000` tunnels a local server instead (e.g. one started with Deno.serve).
// The first line on stdout is the public URL; the request log goes to stderr.
// Build the package first: scripts/build-wasm (in a project of your own: npm:localtunnels).

// @deno-types="../../pkg/localtunnels.d.ts"
import init, { forward, TunnelClient } from '../../pkg/localtunnels.js';

const args = [...Deno.args];
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : undefined;
};
const subdomain = flag('--subdomain');
const forwardTo = flag('--forward');
const server = new URL(args[0] ?? 'http://localhost:3000');

await init(); // fetches ../../pkg/localtunnels_bg.wasm (a file: URL; needs --allow-read)
const client = new TunnelClient({ server: server.href, subdomain });

client.onRequest(forwardTo ? forward(forwardTo) : app);
client.onWebSocket((socket) => {
  socket.onmessage = (e) => socket.send(e.data);
});
client.on('response', (r) => console.error(`${r.status} ${r.method} ${r.url} ${Math.round(r.duration)} ms`));
client.on('error', (e) => console.error(`error: ${e.message}`));

try {
  console.log(await client.connect());
} catch (e) {
  console.error(`could not open the tunnel: ${(e as Error).message}`);
  Deno.exit(1);
}
Deno.addSignalListener('SIGINT', () => {
  client.close();
  Deno.exit(0);
});

function app(request: Request): Response {
  const url = new URL(request.url);
  if (url.pathname === '/echo') {
    return new Response(request.body, { headers: { 'content-type': request.headers.get('content-type') ?? 'text/plain' } });
  }
  if (url.pathname === '/whoami') {
    const info = { runtime: 'deno', version: Deno.version.deno, method: request.method, url: request.url, headers: Object.fromEntries(request.headers) };
    return Response.json(info);
  }
  return new Response(`Hello from Deno ${Deno.version.deno}, through localtunnels.\n`);
}
