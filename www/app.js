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

function logRow({ method, url, status, duration }) {
  const row = document.createElement('tr');
  const path = new URL(url).pathname + new URL(url).search;
  row.dataset.path = path;
  row.dataset.status = String(status);
  for (const text of [new Date().toLocaleTimeString(), method, path, status, Math.round(duration)]) {
    const cell = document.createElement('td');
    cell.textContent = String(text);
    row.append(cell);
  }
  $('log').prepend(row);
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
  client.on('response', logRow);
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
