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
