// The browser end-to-end test's app (what the tab serves) and its visitor (fetch and WebSocket from the
// same page, to the tunnel's public URL: Chromium resolves <name>.localhost to loopback).

const cors = { 'access-control-allow-origin': '*' };

export function app(request) {
  const url = new URL(request.url);
  if (url.pathname === '/echo') return new Response(request.body, { headers: cors });
  const info = { runtime: 'browser', method: request.method, url: request.url, agent: navigator.userAgent };
  return new Response(JSON.stringify(info), { headers: { ...cors, 'content-type': 'application/json' } });
}

export function echo(socket) {
  socket.onmessage = (e) => socket.send(e.data);
}

export async function visit(url, method, body) {
  const res = await fetch(url, { method, body });
  return { status: res.status, body: await res.text() };
}

export function visitWs(url, protocol, message) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [protocol]);
    ws.onopen = () => ws.send(message);
    ws.onmessage = (e) => {
      resolve({ protocol: ws.protocol, reply: e.data });
      ws.close(1000);
    };
    ws.onerror = () => reject(new Error(`WebSocket to ${url} failed`));
  });
}

export function handlers() {
  return { app, echo };
}

/** Records the first byte (the frame type) of every binary message any WebSocket of this page sends. */
export function spyOnSends() {
  const sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (data instanceof ArrayBuffer && data.byteLength > 0) sent.push(new Uint8Array(data)[0]);
    return send.call(this, data);
  };
  return {
    types: () => sent.slice(),
    restore: () => (WebSocket.prototype.send = send),
  };
}

/** `n` GETs of `url?i=<i>` at once; resolves with their statuses and bodies in order. */
export function visitMany(url, n) {
  return Promise.all(Array.from({ length: n }, (_, i) => visit(`${url}?i=${i}`, 'GET')));
}
