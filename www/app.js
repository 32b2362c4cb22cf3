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

/** The log's rows by exchange id: a re-render updates them in place, so a click that lands while the log is
 * re-read (after every response) still reaches its row; a row made anew between the press and the release
 * would get no click at all. */
let rows = new Map();

/** The row of exchange `id`, made once: its cells, its Replay button and its click, which read `row.entry`. */
function rowOf(id) {
  const known = rows.get(id);
  if (known) return known;
  const row = document.createElement('tr');
  for (let i = 0; i < 5; i++) row.append(document.createElement('td'));
  const replay = document.createElement('button');
  replay.textContent = 'Replay';
  replay.className = 'replay-button';
  replay.onclick = (ev) => {
    ev.stopPropagation();
    client.replay(id).then(renderLog, (err) => console.warn('replay:', err.message));
  };
  const action = document.createElement('td');
  action.append(replay);
  row.append(action);
  row.onclick = () => {
    selected = id;
    $('log-detail').textContent = describe(row.entry);
    $('log-detail').hidden = false;
    renderLog();
  };
  return row;
}

/** The log: the client's recent requests, newest first, re-read after every response. */
function renderLog() {
  if (!client) return;
  const next = new Map();
  for (const e of client.requests()) {
    const row = rowOf(e.id);
    next.set(e.id, row);
    row.entry = e;
    row.dataset.id = e.id;
    row.dataset.path = e.request.uri;
    row.dataset.status = String(e.response?.status_code ?? '');
    row.className = e.replay_of ? 'replay' : '';
    if (e.id === selected) row.classList.add('selected');
    const ms = Math.round(e.duration / 1e6);
    const texts = [new Date(e.start).toLocaleTimeString(), e.request.method, e.request.uri, row.dataset.status, ms];
    texts.forEach((text, i) => {
      row.cells[i].textContent = String(text);
    });
  }
  rows = next;
  $('log').replaceChildren(...next.values());
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
