// Test doubles for crates/wasm/tests/mock/: a WebSocket class the client connects through (its other end
// is a core server Session driven by the Rust test) and request / WebSocket handlers written in plain
// JavaScript, the way users write them.

// The socket's events come on the real timers, even while a test delays the client's.
const realSetTimeout = globalThis.setTimeout;
const later = (f, ms) => realSetTimeout(f, ms);

/** Makes every timer set from now on fire `ms` late, as in a hidden browser tab. */
export function delayTimers(ms) {
  globalThis.setTimeout = (f, delay, ...args) => realSetTimeout(f, (delay ?? 0) + ms, ...args);
}

export function restoreTimers() {
  globalThis.setTimeout = realSetTimeout;
}

/** Resolves after `ms` on the real timers. */
export function sleep(ms) {
  return new Promise((resolve) => realSetTimeout(resolve, ms));
}

const sockets = [];
const socketWaiters = [];

class MockWebSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.binaryType = 'blob';
    this.protocol = '';
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.sent = [];
    this.sentWaiter = null;
    this.closedWith = null;
    const waiter = socketWaiters.shift();
    if (waiter) waiter(this);
    else sockets.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error(`send() in readyState ${this.readyState}`);
    if (!(data instanceof ArrayBuffer)) throw new Error(`the client must send ArrayBuffers, got ${typeof data}`);
    this.sent.push(new Uint8Array(data.slice(0)));
    this.wakeSent();
  }

  close(code, reason) {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    this.closedWith = { code, reason };
    this.wakeSent();
    later(() => this.onclose && this.onclose({ code: code ?? 1005, reason: reason ?? '' }), 0);
  }

  // ----- the test's side -----

  open() {
    this.readyState = 1;
    this.protocol = 'localtunnels.v1';
    later(() => this.onopen && this.onopen({}), 0);
  }

  deliver(bytes) {
    const copy = bytes.slice();
    later(() => this.readyState === 1 && this.onmessage && this.onmessage({ data: copy.buffer }), 0);
  }

  dropConnection(code) {
    this.readyState = 3;
    this.wakeSent();
    later(() => this.onclose && this.onclose({ code, reason: '' }), 0);
  }

  /** Dies as Node 22's WebSocket does: an error event, and no close event ever. */
  failWithoutClose() {
    this.readyState = 3;
    this.wakeSent();
    later(() => this.onerror && this.onerror({ type: 'error' }), 0);
  }

  wakeSent() {
    const w = this.sentWaiter;
    this.sentWaiter = null;
    if (w) w();
  }

  /** The next message the client sent, or null once the socket is closed and drained. */
  async nextSent() {
    for (;;) {
      if (this.sent.length) return this.sent.shift();
      if (this.readyState === 3) return null;
      await new Promise((resolve) => (this.sentWaiter = resolve));
    }
  }
}

export function installMock() {
  globalThis.WebSocket = MockWebSocket;
}

/** The next WebSocket the client creates. */
export function nextSocket() {
  const s = sockets.shift();
  if (s) return Promise.resolve(s);
  return new Promise((resolve) => socketWaiters.push(resolve));
}

// ----- handlers -----

const seen = [];

/** Answers with a JSON description of the request, and a few repeated headers. */
async function describe(request) {
  const body = await request.text();
  const info = { method: request.method, url: request.url, headers: [...request.headers], body };
  return new Response(JSON.stringify(info), {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['set-cookie', 'a=1; Path=/'],
      ['set-cookie', 'b=2, c=3'],
      ['x-multi', 'one'],
      ['x-multi', 'two'],
    ],
  });
}

/** Whether this runtime's `Response` keeps `set-cookie` (browsers drop it: a forbidden response header). */
export function cookiesAllowed() {
  return new Response('', { headers: [['set-cookie', 'a=1']] }).headers.has('set-cookie');
}

/** A response-shaped plain object: how a browser handler sets cookies. */
function plain() {
  return {
    status: 202,
    headers: [['Set-Cookie', 'a=1'], ['set-cookie', 'b=2, c=3'], ['x-kind', 'plain']],
    body: 'plain body',
  };
}

/** The same with a header record and bytes. */
function record() {
  return { status: 200, headers: { 'set-cookie': ['x=1', 'y=2'], 'content-length': 3 }, body: new Uint8Array([1, 2, 3]) };
}

/** Fails in every way a handler can, by path. */
function failing(request) {
  switch (new URL(request.url).pathname) {
    case '/throw':
      throw new Error('boom');
    case '/reject':
      return Promise.reject(new Error('nope'));
    case '/silent':
      return new Promise(() => {});
    case '/not-a-response':
      return 42;
    default:
      return new Response('still serving');
  }
}

/** Echoes the request body upper-cased, chunk by chunk, as it arrives. */
function streamEcho(request) {
  const upper = new TransformStream({
    transform(chunk, controller) {
      const text = new TextDecoder().decode(chunk);
      controller.enqueue(new TextEncoder().encode(text.toUpperCase()));
    },
  });
  return new Response(request.body.pipeThrough(upper));
}

/** Counts the request body's bytes. */
async function count(request) {
  const buf = await request.arrayBuffer();
  return new Response(String(buf.byteLength));
}

/** A 1 MiB body: more than one stream window. */
function big() {
  const body = new Uint8Array(1024 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = i % 251;
  return new Response(body);
}

let gateCredits = 0;
let gateCancels = 0;
export function gateCancelCount() {
  return gateCancels;
}
let gateWaiter = null;
/** A server-sent-events response whose chunks only exist once the test opens the gate. */
function gated() {
  let i = 0;
  const stream = new ReadableStream({
    async pull(controller) {
      while (gateCredits === 0) await new Promise((resolve) => (gateWaiter = resolve));
      gateCredits--;
      if (i === 3) {
        controller.close();
        return;
      }
      controller.enqueue(new TextEncoder().encode(`data: ${i++}\n\n`));
    },
    cancel() {
      gateCancels++;
    },
  });
  return new Response(stream, { headers: { 'content-type': 'text/event-stream' } });
}

export function openGate() {
  gateCredits++;
  const w = gateWaiter;
  gateWaiter = null;
  if (w) w();
}

/** Echoes every message; reports the close. */
function wsEcho(socket, request) {
  seen.push({ url: socket.url, protocol: socket.protocol, requestUrl: request && request.url });
  socket.onmessage = (e) => socket.send(e.data);
  socket.addEventListener('close', (e) => seen.push({ closed: e.code, reason: e.reason, clean: e.wasClean }));
}

/** Sets its listener only after a while: messages that came before must not be lost. */
function wsLate(socket) {
  setTimeout(() => {
    socket.addEventListener('message', (e) => socket.send(`late:${e.data}`));
  }, 0);
}

/** Closes with a code of its own on the first message. */
function wsCloser(socket) {
  socket.onmessage = () => socket.close(4001, 'bye');
  socket.onclose = (e) => seen.push({ closed: e.code, reason: e.reason });
}

export function handlers() {
  return { describe, plain, record, failing, streamEcho, count, big, gated, wsEcho, wsLate, wsCloser };
}

export function seenBySockets() {
  return seen.splice(0);
}

/** Collects a client's events: `client.on(name, rec.listener(name))`. */
export function recorder() {
  const events = [];
  return { events, listener: (name) => (payload) => events.push({ name, payload }) };
}

export function toJson(value) {
  return JSON.stringify(value, (k, v) => (v instanceof Error ? { error: v.message, reason: v.reason } : v));
}
