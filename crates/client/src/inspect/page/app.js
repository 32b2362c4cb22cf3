// The inspector's page: the agent API's entries, live through /api/requests/stream.
'use strict'

const $ = (sel) => document.querySelector(sel)
const entries = new Map() // id -> entry (a WebSocket entry has `messages` too)
let selected = null
let publicUrl = ''

// ---- data ----

async function api (method, path, body) {
  const init = { method, headers: {} }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const res = await fetch(path, init)
  if (!res.ok) {
    let msg = res.status + ' ' + res.statusText
    try { msg = (await res.json()).msg || msg } catch (_) {}
    throw new Error(msg)
  }
  return res.status === 204 ? null : res.json()
}

async function load () {
  const [http, ws, tunnels] = await Promise.all([
    api('GET', '/api/requests/http'), api('GET', '/api/requests/ws'), api('GET', '/api/tunnels')
  ])
  showTunnel(tunnels)
  for (const e of http.requests) entries.set(e.id, e)
  for (const s of ws.sessions) entries.set(s.id, s)
  render()
}

function showTunnel (tunnels) {
  const t = tunnels.tunnels[0]
  if (!t) return
  publicUrl = t.public_url
  $('#tunnel').textContent = `${t.public_url} \u2192 ${t.config.addr}`
}

function live () {
  const feed = new EventSource('/api/requests/stream')
  feed.onopen = () => { $('#live').textContent = '\u25cf live'; $('#live').className = 'on' }
  feed.onerror = () => { $('#live').textContent = '\u25cf reconnecting'; $('#live').className = 'muted' }
  const upsert = (ev) => {
    const e = JSON.parse(ev.data)
    entries.set(e.id, e)
    if (!publicUrl) api('GET', '/api/tunnels').then(showTunnel, () => {})
    render()
    if (selected === e.id) showDetail(e.id)
  }
  feed.addEventListener('http', upsert)
  feed.addEventListener('ws', upsert)
  feed.addEventListener('clear', () => { entries.clear(); selected = null; render(); showDetail(null) })
}

// ---- bytes ----

function b64bytes (b64) {
  const bin = atob(b64 || '')
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

function b64of (bytes) {
  let bin = ''
  for (const b of bytes) bin += String.fromCharCode(b)
  return btoa(bin)
}

/** The body part of a `raw` capture: what follows the first blank line. */
function bodyOf (raw) {
  const bytes = b64bytes(raw)
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return bytes.subarray(i + 4)
  }
  return new Uint8Array(0)
}

function utf8 (bytes) {
  try { return new TextDecoder('utf-8', { fatal: true }).decode(bytes) } catch (_) { return null }
}

function hexdump (bytes) {
  const lines = []
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16)
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ')
    const text = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('')
    lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + ' ' + text)
  }
  return lines.join('\n')
}

function header (headers, name) {
  for (const [k, v] of Object.entries(headers || {})) if (k.toLowerCase() === name) return v[0]
  return ''
}

// ---- list ----

function matches (e) {
  const method = $('#f-method').value
  const path = $('#f-path').value.trim()
  const status = $('#f-status').value.trim().toLowerCase()
  const text = $('#f-text').value.trim().toLowerCase()
  if ($('#f-ws').checked && !e.websocket) return false
  if (method && e.request.method !== method) return false
  if (path && !e.request.uri.includes(path)) return false
  if (status) {
    const code = e.response ? String(e.response.status_code) : (e.error ? 'error' : 'pending')
    const ok = status.endsWith('xx') ? code[0] === status[0] : code === status
    if (!ok) return false
  }
  if (text) {
    const hay = [JSON.stringify(e.request.headers), e.response && JSON.stringify(e.response.headers),
      utf8(bodyOf(e.request.raw)), e.response && utf8(bodyOf(e.response.raw)), e.request.uri]
    if (!hay.some((h) => h && h.toLowerCase().includes(text))) return false
  }
  return true
}

function statusCell (e) {
  if (e.response) return [String(e.response.status_code), 's' + String(e.response.status_code)[0]]
  return e.error ? ['error', 'serr'] : ['\u2026', '']
}

function ms (ns) { return ns ? (ns / 1e6).toFixed(ns < 1e7 ? 2 : 0) + ' ms' : '' }

function render () {
  const rows = $('#rows')
  const list = [...entries.values()].sort((a, b) => (a.id < b.id ? 1 : -1)).filter(matches)
  rows.replaceChildren(...list.map((e) => {
    const tr = document.createElement('tr')
    tr.className = 'entry' + (e.id === selected ? ' selected' : '') + (e.replay_of ? ' replay' : '')
    tr.dataset.id = e.id
    const [status, cls] = statusCell(e)
    const cells = [new Date(e.start).toLocaleTimeString(), e.request.method + (e.websocket ? ' ws' : ''),
      e.request.uri, status, ms(e.duration), e.response ? e.response.body_size + ' B' : '']
    for (const [i, c] of cells.entries()) {
      const td = document.createElement('td')
      td.textContent = c
      if (i === 3) td.className = cls
      if (i === 2) td.title = c
      tr.append(td)
    }
    tr.onclick = () => { selected = e.id; render(); showDetail(e.id) }
    return tr
  }))
  $('#empty').hidden = entries.size > 0
  $('#count').textContent = `${list.length} of ${entries.size}`
}

// ---- detail ----

function el (tag, props, ...children) {
  const node = document.createElement(tag)
  Object.assign(node, props || {})
  node.append(...children.filter((c) => c !== null && c !== undefined))
  return node
}

function table (rows) {
  return el('table', null, ...rows.map(([k, v]) => el('tr', null, el('td', { textContent: k }), el('td', { textContent: v }))))
}

function headerRows (headers) {
  const rows = []
  for (const [k, vs] of Object.entries(headers || {})) for (const v of vs) rows.push([k, v])
  return rows
}

/** JSON pretty-printed with light colouring. */
function jsonView (value) {
  const pre = el('pre', { className: 'json' })
  const text = JSON.stringify(value, null, 2)
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)\b/g
  let last = 0
  for (const m of text.matchAll(re)) {
    pre.append(text.slice(last, m.index))
    const span = el('span', { className: m[1] ? (m[2] ? 'k' : 's') : 'n', textContent: m[1] || m[3] })
    pre.append(span)
    if (m[2]) pre.append(m[2])
    last = m.index + m[0].length
  }
  pre.append(text.slice(last))
  return pre
}

function bodyView (part, side) {
  const bytes = bodyOf(part.raw)
  const box = el('div', { className: 'body ' + side })
  if (part.body_size === 0 && bytes.length === 0) return el('p', { className: 'muted body ' + side, textContent: 'no body' })
  if (part.truncated) box.append(el('p', { className: 'note', textContent: `showing the first ${bytes.length} of ${part.body_size} bytes` }))
  const type = header(part.headers, 'content-type').toLowerCase()
  const text = utf8(bytes)
  if (type.startsWith('image/') && !part.truncated) {
    box.append(el('img', { className: 'body', src: `data:${type.split(';')[0]};base64,${b64of(bytes)}`, alt: 'image body' }))
  } else if (text !== null && (type.includes('json') || /^\s*[[{]/.test(text))) {
    try { box.append(jsonView(JSON.parse(text))) } catch (_) { box.append(el('pre', { className: 'text', textContent: text })) }
  } else if (text !== null && !/[\u0000-\u0008\u000e-\u001f]/.test(text)) {
    box.append(el('pre', { className: 'text', textContent: text }))
  } else {
    box.append(el('pre', { className: 'hex', textContent: hexdump(bytes) }))
  }
  return box
}

function curlOf (e) {
  const q = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'"
  const skip = new Set(['host', 'content-length', 'te', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'connection'])
  const parts = ['curl', '-X', e.request.method, q((publicUrl || '') + e.request.uri)]
  for (const [k, v] of headerRows(e.request.headers)) if (!skip.has(k.toLowerCase())) parts.push('-H', q(`${k}: ${v}`))
  const body = bodyOf(e.request.raw)
  if (body.length) parts.push('--data-binary', q(utf8(body) ?? '(binary body)'))
  return parts.join(' ')
}

async function replay (id, edit) {
  const status = $('#action-status')
  try {
    await api('POST', '/api/requests/http', edit ? { id, edit } : { id })
    status.textContent = 'replayed'
  } catch (err) {
    status.textContent = 'replay failed: ' + err.message
  }
}

function editForm (e) {
  const form = el('form', { id: 'edit' })
  const method = el('input', { name: 'method', value: e.request.method })
  const uri = el('input', { name: 'uri', value: e.request.uri })
  const headers = el('textarea', { name: 'headers', value: headerRows(e.request.headers).map(([k, v]) => `${k}: ${v}`).join('\n') })
  const bytes = bodyOf(e.request.raw)
  const body = el('textarea', { name: 'body', value: utf8(bytes) ?? '' })
  const send = el('button', { type: 'submit', id: 'edit-send', textContent: 'Send' })
  form.append(el('label', null, 'Method ', method), el('label', null, 'Path ', uri), 'Headers', headers, 'Body', body, send)
  form.onsubmit = (ev) => {
    ev.preventDefault()
    const map = {}
    for (const line of headers.value.split('\n')) {
      const i = line.indexOf(':')
      if (i <= 0) continue
      const k = line.slice(0, i).trim()
      ;(map[k] ||= []).push(line.slice(i + 1).trim())
    }
    const encoded = b64of(new TextEncoder().encode(body.value))
    replay(e.id, { method: method.value.trim(), uri: uri.value.trim(), headers: map, body: encoded })
  }
  return form
}

function messagesView (e) {
  const rows = (e.messages || []).map((m) => el('tr', { className: 'msg ' + m.direction },
    el('td', { textContent: `${m.direction === 'in' ? 'visitor' : 'origin'} ${new Date(m.time).toLocaleTimeString()}` }),
    el('td', { textContent: `${m.opcode}, ${m.size} B${m.truncated ? ' (first bytes)' : ''}: ${m.text ?? m.base64}` })))
  const note = e.messages_dropped ? el('p', { className: 'note', textContent: `${e.messages_dropped} older messages not kept` }) : null
  return el('div', { className: 'messages' }, note, el('table', null, ...rows),
    e.close_code ? el('p', { className: 'muted', textContent: `closed with ${e.close_code}` }) : null)
}

function showDetail (id) {
  const d = $('#detail')
  const e = id && entries.get(id)
  if (!e) { d.replaceChildren(el('p', { className: 'muted', textContent: 'Select a request to see it.' })); return }
  const url = new URL(e.request.uri, 'http://x')
  const summary = [['id', e.id], ['started', e.start], ['duration', ms(e.duration) || 'pending'],
    ['from', e.remote_addr || (e.replay_of ? 'replay' : '')], ['tunnel', e.tunnel_name]]
  if (e.replay_of) summary.push(['replay of', e.replay_of])
  if (e.error) summary.push(['error', e.error])
  const actions = el('div', { className: 'actions' },
    el('button', { id: 'replay', type: 'button', textContent: 'Replay', onclick: () => replay(e.id) }),
    el('button', { id: 'edit-replay', type: 'button', textContent: 'Replay with edits', onclick: () => { if (!$('#edit')) actions.after(editForm(e)) } }),
    el('button', { id: 'copy-curl', type: 'button', textContent: 'Copy as curl', onclick: () => {
      const text = curlOf(e)
      $('#curl').textContent = text
      if (navigator.clipboard) navigator.clipboard.writeText(text).catch(() => {})
    } }),
    el('span', { id: 'action-status', className: 'muted' }))
  const parts = [el('h2', { textContent: `${e.request.method} ${e.request.uri}` }), actions, el('pre', { id: 'curl' }),
    table(summary)]
  if ([...url.searchParams].length) parts.push(el('h3', { textContent: 'Query' }), table([...url.searchParams]))
  parts.push(el('h3', { textContent: 'Request headers' }), table(headerRows(e.request.headers)),
    el('h3', { textContent: 'Request body' }), bodyView(e.request, 'request'))
  if (e.response) {
    parts.push(el('h3', { textContent: `Response: ${e.response.status}` }), table(headerRows(e.response.headers)),
      el('h3', { textContent: 'Response body' }), bodyView(e.response, 'response'))
  }
  if (e.websocket) parts.push(el('h3', { textContent: 'WebSocket messages' }), messagesView(e))
  d.replaceChildren(...parts)
  if (!$('#curl').textContent) $('#curl').hidden = true
  $('#copy-curl').addEventListener('click', () => { $('#curl').hidden = false })
}

for (const input of document.querySelectorAll('#filters input, #filters select')) input.addEventListener('input', render)
$('#clear').onclick = () => api('DELETE', '/api/requests/http').catch(() => {})
live()
load().catch((err) => { $('#tunnel').textContent = 'cannot read the agent API: ' + err.message })
