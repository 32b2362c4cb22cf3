// A Cloudflare Worker as the origin of a public URL. A Durable Object holds the tunnel: its WebSocket
// and timers outlive any one request (a plain Worker's I/O belongs to the request that created it).
//
//   GET /start[?subdomain=NAME]   opens the tunnel (once) and answers { url }; while it runs, asking for
//                                 another subdomain is refused with 409
//   GET /status                   { running, connected, url }
//   GET /stop                     closes it and forgets it
//
// Visitors of the public URL are answered by `app` below, inside the Durable Object. The server to
// connect to comes from the TUNNEL_SERVER variable (wrangler.toml), e.g. http://localhost:3000.
//
// Surviving eviction: the runtime may evict the object (a deploy, a restart, memory pressure) and with it
// the tunnel's WebSocket. What the tunnel needs to come back is in the object's storage: the subdomain
// and the server's reconnect token (updated on every connect). The object reopens the tunnel when it
// wakes (any request, or its alarm, which also checks every ALARM_MS that the socket is still up), and
// the token gets it its name back at once, although the server still holds the name for the dropped
// connection.
//
// Run with `npm run dev` in this directory (Miniflare, see README.md), `wrangler dev`, or the tests
// (tests/js/worker.test.mjs).

import { initSync, TunnelClient } from '../../../pkg/localtunnels.js';
import wasmModule from '../../../pkg/localtunnels_bg.wasm';

initSync({ module: wasmModule });

/** How often the alarm checks the tunnel. */
const ALARM_MS = 30_000;

export class Tunnel {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.client = null;
    /** The connect() in flight or done: resolves with the URL. */
    this.ready = null;
    // Woken after an eviction with a tunnel in storage: reopen it before any request is answered.
    state.blockConcurrencyWhile(async () => {
      const saved = await state.storage.get('tunnel');
      if (saved) this.open(saved);
    });
  }

  /** Opens the tunnel described by `saved` ({ subdomain, reconnectToken }) unless it is open. */
  open(saved) {
    if (this.client) return this.ready;
    const client = new TunnelClient({
      server: this.env.TUNNEL_SERVER ?? 'http://localhost:3000',
      subdomain: saved.subdomain || undefined,
      reconnectToken: saved.reconnectToken || undefined,
    });
    client.onRequest(app);
    client.onWebSocket((socket) => {
      socket.onmessage = (e) => socket.send(e.data);
    });
    // Every welcome may bring a new token (and, without a subdomain, the name): keep them.
    client.on('connected', ({ name }) => {
      this.state.storage.put('tunnel', { subdomain: saved.subdomain || name, reconnectToken: client.reconnectToken });
    });
    this.client = client;
    this.ready = client.connect().catch((e) => {
      // Refused or unreachable on the first try: forget it, so that /start can try again.
      if (this.client === client) this.client = null;
      throw e;
    });
    this.ready.catch(() => {});
    this.state.storage.setAlarm(Date.now() + ALARM_MS);
    return this.ready;
  }

  /** Every ALARM_MS while a tunnel is kept: reopen it if its client is gone or gave up. */
  async alarm() {
    const saved = await this.state.storage.get('tunnel');
    if (!saved) return;
    if (this.client && !this.client.connected) {
      // Down at two checks in a row: it gave up (replaced, refused) or is stuck. Start over.
      if ((this.downChecks = (this.downChecks ?? 0) + 1) >= 2) {
        this.client.close();
        this.client = null;
      }
    } else {
      this.downChecks = 0;
    }
    this.open(saved);
    await this.state.storage.setAlarm(Date.now() + ALARM_MS);
  }

  async fetch(request) {
    const { pathname, searchParams } = new URL(request.url);
    if (pathname === '/start') {
      const subdomain = searchParams.get('subdomain') ?? this.env.TUNNEL_SUBDOMAIN ?? '';
      const saved = (await this.state.storage.get('tunnel')) ?? null;
      if (saved && subdomain && saved.subdomain !== subdomain) {
        const error = `the tunnel is already running as '${saved.subdomain}': GET /stop first`;
        return Response.json({ error, url: this.client?.url }, { status: 409 });
      }
      if (!saved) await this.state.storage.put('tunnel', { subdomain });
      try {
        const url = await this.open(saved ?? { subdomain });
        return Response.json({ url });
      } catch (e) {
        await this.state.storage.delete('tunnel');
        return Response.json({ error: e.message, reason: e.reason }, { status: 502 });
      }
    }
    if (pathname === '/status') {
      const c = this.client;
      return Response.json({ running: Boolean(c), connected: Boolean(c?.connected), url: c?.url });
    }
    if (pathname === '/stop') {
      await this.client?.close();
      this.client = null;
      this.ready = null;
      await this.state.storage.delete('tunnel');
      await this.state.storage.deleteAlarm();
      return Response.json({ stopped: true });
    }
    return new Response('GET /start to open the tunnel, /status, /stop to close it\n', { status: 404 });
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
