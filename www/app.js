// The tab's side: connect a TunnelClient and answer visitors from the two editors. `?server=` and
// `?subdomain=` pre-fill the form; `&connect` connects at once.
import init, { TunnelClient } from '../pkg/localtunnels.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.has('server')) $('server').value = params.get('server');
if (params.has('subdomain')) $('subdomain').value = params.get('subdomain');

let client = null;

function setStatus(text, kind = '') {
  $('status').textContent = text;
  $('status').className = `status ${kind}`;
}

/** The app this tab serves. */
function serve(request) {
  const { pathname } = new URL(request.url);
  if (pathname === '/' || pathname === '/index.html') {
    return new Response($('page-html').value, { headers: { 'content-type': 'text/html; charset=utf-8' } });
  }
  if (pathname === '/api/data') {
    try {
      const data = JSON.parse($('data-json').value);
      return new Response(JSON.stringify(data), { headers: { 'content-type': 'application/json' } });
    } catch (e) {
      return new Response(`the JSON in the tab does not parse: ${e.message}\n`, { status: 500 });
    }
  }
  return new Response('not found\n', { status: 404, headers: { 'content-type': 'text/plain' } });
}

let selected = null;

/** One captured exchange (`client.requests()`'s shape) as text: heads and bodies. */
function describe(e) {
  const part = (title, p) => {
    if (!p) return `${title}: pending`;
    const raw = atob(p.raw);
    const cut = p.truncated ? `\n(first bytes of ${p.body_size})` : '';
    return `${title}\n${raw}${cut}`;
  };
  return `${part('request', e.request)}\n\n${part('response', e.response)}`;
}

/** The log: the client's recent requests, newest first, re-read after every response. */
function renderLog() {
  if (!client) return;
  const rows = client.requests().map((e) => {
    const row = document.createElement('tr');
    row.dataset.id = e.id;
    row.dataset.path = e.request.uri;
    row.dataset.status = String(e.response?.status_code ?? '');
    if (e.replay_of) row.className = 'replay';
    if (e.id === selected) row.classList.add('selected');
    const ms = Math.round(e.duration / 1e6);
    for (const text of [new Date(e.start).toLocaleTimeString(), e.request.method, e.request.uri, row.dataset.status, ms]) {
      const cell = document.createElement('td');
      cell.textContent = String(text);
      row.append(cell);
    }
    const replay = document.createElement('button');
    replay.textContent = 'Replay';
    replay.className = 'replay-button';
    replay.onclick = (ev) => {
      ev.stopPropagation();
      client.replay(e.id).then(renderLog, (err) => console.warn('replay:', err.message));
    };
    const action = document.createElement('td');
    action.append(replay);
    row.append(action);
    row.onclick = () => {
      selected = e.id;
      $('log-detail').textContent = describe(e);
      $('log-detail').hidden = false;
      renderLog();
    };
    return row;
  });
  $('log').replaceChildren(...rows);
}

async function connect() {
  try {
    client = new TunnelClient({
      server: $('server').value.trim(),
      subdomain: $('subdomain').value.trim() || undefined,
    });
  } catch (e) {
    setStatus(e.message, 'bad');
    return;
  }
  client.onRequest(serve);
  client.onWebSocket((socket) => {
    socket.onmessage = (e) => socket.send(e.data);
  });
  client.on('response', () => {
    renderLog();
    // The response's body is recorded as it is sent: show its size and duration once it went.
    setTimeout(renderLog, 100);
  });
  client.on('reconnecting', ({ attempt, delay }) => setStatus(`Connection lost; retry ${attempt} in ${delay} ms…`, 'bad'));
  client.on('connected', ({ url }) => setStatus(`Connected: visitors of ${url} are answered by this tab.`, 'ok'));
  client.on('error', (e) => console.warn('localtunnels:', e.message));
  $('connect').disabled = true;
  setStatus('Connecting…');
  try {
    const url = await client.connect();
    $('public-url').href = url;
    $('public-url').textContent = url;
    $('disconnect').disabled = false;
  } catch (e) {
    setStatus(`Could not connect: ${e.message}`, 'bad');
    client = null;
    $('connect').disabled = false;
  }
}

function disconnect() {
  client?.close();
  client = null;
  $('public-url').textContent = '';
  $('public-url').removeAttribute('href');
  $('connect').disabled = false;
  $('disconnect').disabled = true;
  setStatus('Not connected.');
}

$('data-json').addEventListener('input', () => {
  try {
    JSON.parse($('data-json').value);
    $('json-error').hidden = true;
  } catch (e) {
    $('json-error').textContent = e.message;
    $('json-error').hidden = false;
  }
});
$('connect').addEventListener('click', connect);
$('disconnect').addEventListener('click', disconnect);

await init();
document.body.dataset.ready = 'true';
if (params.has('connect')) connect();
