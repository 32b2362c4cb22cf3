// A Cloudflare Worker as the origin of a public URL. A Durable Object holds the tunnel: its WebSocket
// and timers outlive any one request (a plain Worker's I/O belongs to the request that created it).
//
//   GET /start   opens the tunnel (once) and answers { url }
//   GET /stop    closes it
//
// Visitors of the public URL are answered by `app` below, inside the Durable Object. The server to
// connect to comes from the TUNNEL_SERVER variable (wrangler.toml), e.g. http://localhost:3000.
// Run with `wrangler dev` (see README.md) or miniflare (tests/js/worker.test.mjs).

import { initSync, TunnelClient } from '../../../pkg/localtunnels.js';
import wasmModule from '../../../pkg/localtunnels_bg.wasm';

initSync({ module: wasmModule });

export class Tunnel {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.client = null;
    this.url = null;
  }

  async fetch(request) {
    const { pathname, searchParams } = new URL(request.url);
    if (pathname === '/start') {
      if (!this.client) {
        const server = new URL(this.env.TUNNEL_SERVER ?? 'http://localhost:3000');
        const secure = server.protocol === 'https:';
        this.client = new TunnelClient({
          host: server.hostname,
          port: Number(server.port || (secure ? 443 : 80)),
          secure,
          subdomain: searchParams.get('subdomain') ?? this.env.TUNNEL_SUBDOMAIN ?? undefined,
        });
        this.client.onRequest(app);
        this.client.onWebSocket((socket) => {
          socket.onmessage = (e) => socket.send(e.data);
        });
        try {
          this.url = await this.client.connect();
        } catch (e) {
          this.client = null;
          return Response.json({ error: e.message, reason: e.reason }, { status: 502 });
        }
      }
      return Response.json({ url: this.url });
    }
    if (pathname === '/stop') {
      this.client?.close();
      this.client = null;
      return Response.json({ stopped: true });
    }
    return new Response('GET /start to open the tunnel, /stop to close it\n', { status: 404 });
  }
}

async function app(request) {
  const url = new URL(request.url);
  if (url.pathname === '/echo') {
    return new Response(request.body, { headers: { 'content-type': request.headers.get('content-type') ?? 'text/plain' } });
  }
  if (url.pathname === '/whoami') {
    const info = { runtime: 'workerd', method: request.method, url: request.url, headers: Object.fromEntries(request.headers) };
    return Response.json(info);
  }
  return new Response('Hello from a Cloudflare Worker (a Durable Object), through localtunnels.\n');
}

export default {
  fetch(request, env) {
    const stub = env.TUNNEL.get(env.TUNNEL.idFromName('tunnel'));
    return stub.fetch(request);
  },
};
