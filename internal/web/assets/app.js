// dispatch status page. Every text from the daemon (chat ids, messages,
// replies, errors) goes into the page as a text node, never as markup.
'use strict';

const $ = (sel) => document.querySelector(sel);
const MAX_EVENTS = 200;
const TOKEN_KEY = 'dispatch-token';
const state = {
  token: '',           // the session token (sessionStorage: this tab, this origin)
  loaded: false,       // the first status has arrived
  status: null,
  sortKey: '', sortDir: 1,
  filter: '',
  chat: null,          // the chat shown in the chat view
  lastSeq: null,       // the last event seq on the timeline
  stream: null,        // the AbortController of the live stream
  down: null,          // when the daemon stopped answering
};

// el builds an element; string children become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function dur(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

function bytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + ' GiB';
  return Math.round(n / (1 << 20)) + ' MiB';
}

function clock(at) {
  const d = new Date(at);
  return isNaN(d) ? '' : d.toLocaleTimeString();
}

function utf8Len(s) { return new TextEncoder().encode(String(s || '')).length; }

function clip(s, n) {
  s = String(s || '');
  return s.length > n ? s.slice(0, n) + '…' : s;
}

function notice(msg, isError, sticky) {
  const n = $('#notice');
  n.textContent = msg;
  n.className = 'notice' + (isError ? ' error' : '');
  n.hidden = !msg;
  clearTimeout(notice.t);
  if (msg && !sticky) notice.t = setTimeout(() => { n.hidden = true; }, 6000);
}

// The session token goes in a header, never in a cookie: cookies reach
// every port of the host, a header only this page's requests.
function auth(extra) {
  return Object.assign({ Authorization: 'Bearer ' + state.token }, extra || {});
}

// ended says the session is over (the server was restarted, or the token
// is gone) and stops asking.
function ended() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = '';
  notice('no session: run dispatch web and open the URL it prints (its secret works once)', true, true);
}

async function answer(r) {
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401) ended();
  if (!r.ok) throw new Error((body && body.error) || ('HTTP ' + r.status));
  return body;
}

async function getJSON(path) {
  if (!state.token) throw new Error('no session');
  return answer(await fetch(path, { credentials: 'omit', cache: 'no-store', headers: auth() }));
}

async function post(path, body) {
  if (!state.token) throw new Error('no session');
  return answer(await fetch(path, {
    method: 'POST', credentials: 'omit',
    headers: auth({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
  }));
}

// --- the daemon line and the sessions table ---

async function refreshStatus() {
  try {
    state.status = await getJSON('/api/status');
    state.loaded = true;
    state.down = null;
  } catch (e) {
    if (!state.down) state.down = Date.now();
    state.status = null;
  }
  renderDaemon();
  renderSessions();
}

function renderDaemon() {
  const p = $('#daemon');
  p.replaceChildren();
  const st = state.status;
  if (!st) {
    const since = state.down ? dur((Date.now() - state.down) / 1000) : '';
    p.append(el('span', { class: 'bad' }, 'daemon not reachable'), ' for ' + since);
    return;
  }
  const d = st.daemon || {}, q = st.queue || {};
  const api = d.api === 'up'
    ? el('span', { class: 'ok' }, 'API up')
    : el('span', { class: 'bad' }, 'API down');
  p.append(
    'pid ' + d.pid + ' · ' + (d.version || '') + ' · up ' + dur(d.uptime_seconds || 0) + ' · ', api);
  if (d.api_outage_seconds > 0 || d.api !== 'up') {
    p.append(' (' + (d.api_outages || 0) + ' outage' + (d.api_outages === 1 ? '' : 's') +
      ', ' + dur(d.api_outage_seconds || 0) + ' down' + (d.api_held ? ', ' + d.api_held + ' held' : '') + ')');
  }
  p.append(' · queue: ' + (q.pending || 0) + ' pending, ' + (q.inflight || 0) + ' in flight, ');
  p.append(el('span', { class: q.dead ? 'bad' : '' }, (q.dead || 0) + ' dead'));
  if (d.store_lost) p.append(' · ', el('span', { class: 'bad' }, 'store: ' + d.store_lost));
  if (d.resource_error) p.append(' · ', el('span', { class: 'warn' }, d.resource_error));
}

function sortValue(s, key) {
  switch (key) {
    case 'health': return (s.healthy ? 1 : 0) + ':' + s.health_reason;
    case 'chat_id': case 'state': return String(s[key] || '');
    default: return Number(s[key] || 0);
  }
}

function sessionCompare(a, b) {
  if (state.sortKey) {
    const x = sortValue(a, state.sortKey), y = sortValue(b, state.sortKey);
    if (x < y) return -state.sortDir;
    if (x > y) return state.sortDir;
  }
  // default, and ties: the unhealthy first, then by chat
  if (a.healthy !== b.healthy) return a.healthy ? 1 : -1;
  return a.chat_id < b.chat_id ? -1 : a.chat_id > b.chat_id ? 1 : 0;
}

function renderSessions() {
  const tbody = $('#sessions tbody');
  const all = (state.status && state.status.sessions) || [];
  const f = state.filter.toLowerCase();
  const rows = all.filter((s) => !f ||
    [s.chat_id, s.state, s.health_reason, s.stop_reason].some((v) => String(v || '').toLowerCase().includes(f)));
  rows.sort(sessionCompare);
  const hasMem = all.some((s) => 'rss_bytes' in s);
  $('#sessions th.mem').hidden = !hasMem;
  $('#session-count').textContent = all.length ? '(' + (rows.length === all.length ? all.length : rows.length + ' of ' + all.length) + ')' : '';
  $('#no-sessions').hidden = all.length > 0;
  if (state.loaded) $('#no-sessions').textContent = 'no sessions yet';
  for (const th of document.querySelectorAll('#sessions th')) {
    th.classList.toggle('asc', th.dataset.key === state.sortKey && state.sortDir > 0);
    th.classList.toggle('desc', th.dataset.key === state.sortKey && state.sortDir < 0);
  }
  tbody.replaceChildren(...rows.map((s) => {
    const reason = s.health_reason + (s.stop_reason ? ' (' + s.stop_reason + ')' : '') +
      (s.store_error ? ' store: ' + s.store_error : '');
    const tr = el('tr', { class: (s.healthy ? '' : 'unhealthy') + (s.chat_id === state.chat ? ' selected' : '') },
      el('td', { 'data-label': 'chat' },
        el('button', { class: 'link chat-id', type: 'button', title: 'recent messages', onclick: () => openChat(s.chat_id) }, s.chat_id)),
      el('td', { 'data-label': 'state' }, s.state + (s.busy ? ' (busy)' : '')),
      healthCell(s, reason),
      el('td', { 'data-label': 'idle', class: 'num' }, dur(s.idle_seconds || 0)),
      el('td', { 'data-label': 'queue', class: 'num' }, s.queue_depth || 0),
      el('td', { 'data-label': 'turns', class: 'num' }, s.turns || 0),
      el('td', { 'data-label': 'restarts', class: 'num' + (s.restarts ? ' warn' : '') }, s.restarts || 0));
    tr.dataset.chat = s.chat_id;
    if (hasMem) tr.append(el('td', { 'data-label': 'memory', class: 'num' }, 'rss_bytes' in s ? bytes(s.rss_bytes) : '–'));
    return tr;
  }));
}

// healthCell is the health verdict: green when all is well, red when not,
// and amber for a chat an operator paused (healthy, but its messages wait).
function healthCell(s, reason) {
  if (s.state === 'paused') {
    const n = s.queue_depth || 0;
    return el('td', { 'data-label': 'health', class: 'warn', title: 'dispatch sessions resume ' + s.chat_id },
      'paused' + (n ? ', ' + n + ' waiting' : '') + ' (resume to let them go)');
  }
  return el('td', { 'data-label': 'health', class: s.healthy ? 'ok' : 'bad' }, (s.healthy ? '✓ ' : '✗ ') + reason);
}

// expandable marks a text element cut to a few lines: when it overflows,
// a "more" button shows the rest (and "less" cuts it again).
function expandable(e) {
  requestAnimationFrame(() => {
    if (e.scrollHeight <= e.clientHeight + 1 || e.nextElementSibling && e.nextElementSibling.classList.contains('more')) return;
    const b = el('button', { type: 'button', class: 'link more' }, 'more');
    b.onclick = () => { const open = e.classList.toggle('open'); b.textContent = open ? 'less' : 'more'; };
    e.after(b);
  });
  return e;
}

// --- dead letters ---

async function refreshDead() {
  let page;
  try { page = await getJSON('/api/dead'); } catch (e) { return; }
  const msgs = page.messages || [];
  $('#dead-count').textContent = msgs.length ? '(' + msgs.length + ')' : '';
  $('#no-dead').textContent = 'none';
  $('#no-dead').hidden = msgs.length > 0;
  $('#dead tbody').replaceChildren(...msgs.map((m) => {
    const drop = el('button', { type: 'button', class: 'small danger', textContent: 'drop' });
    drop.onclick = () => {
      if (!drop.classList.contains('confirm')) {
        drop.classList.add('confirm');
        drop.textContent = 'drop for good?';
        setTimeout(() => { drop.classList.remove('confirm'); drop.textContent = 'drop'; }, 5000);
        return;
      }
      act('drop', m.id);
    };
    // The list clips texts and errors (truncated says so): "show all"
    // fetches the message in full.
    const text = el('div', { class: 'text' }, m.text + (m.truncated && m.text_bytes > utf8Len(m.text) ? '…' : ''));
    const error = el('div', { class: 'text' }, m.error + (m.truncated && m.error_bytes > utf8Len(m.error) ? '…' : ''));
    const full = m.truncated ? el('button', { type: 'button', class: 'link more' }, 'show all') : null;
    if (full) {
      full.onclick = async () => {
        try {
          const f = await getJSON('/api/message?id=' + encodeURIComponent(m.id));
          text.textContent = f.text; error.textContent = f.error;
          full.remove();
        } catch (e) { notice('could not load message ' + m.id + ': ' + e.message, true); }
      };
    }
    const tr = el('tr', {},
      el('td', { 'data-label': 'chat', class: 'chat-id' }, m.chat_id),
      el('td', { 'data-label': 'message' }, text),
      el('td', { 'data-label': 'error', class: 'err' }, error, full),
      el('td', { 'data-label': 'tries', class: 'num' }, m.attempts),
      el('td', { class: 'actions' },
        el('button', { type: 'button', class: 'small retry', onclick: () => act('retry', m.id) }, 'retry'),
        drop));
    tr.dataset.id = m.id;
    return tr;
  }));
}

async function act(what, id) {
  try {
    await post('/api/' + what, { id });
    notice(what === 'retry' ? 'message ' + id + ' is queued again' : 'message ' + id + ' dropped');
  } catch (e) {
    notice(what + ' failed: ' + e.message, true);
  }
  refreshDead();
  refreshStatus();
}

// --- permission requests ---

async function refreshPerms() {
  let page;
  try { page = await getJSON('/api/permissions'); } catch (e) { return; }
  const reqs = page.requests || [];
  $('#perm-section').hidden = reqs.length === 0;
  $('#perm-count').textContent = reqs.length ? '(' + reqs.length + ')' : '';
  $('#perms tbody').replaceChildren(...reqs.map((q) => {
    const tr = el('tr', {},
      el('td', { 'data-label': 'chat', class: 'chat-id' }, q.chat_id),
      el('td', { 'data-label': 'tool' }, q.tool),
      el('td', { 'data-label': 'what' }, el('div', { class: 'text' }, q.summary)),
      el('td', { 'data-label': 'expires', class: 'num' }, clock(q.expires_at)),
      el('td', { class: 'actions' },
        el('button', { type: 'button', class: 'small allow', onclick: () => decide(q, 'allow') }, 'allow'),
        el('button', { type: 'button', class: 'small always', title: 'allow, and let this chat use ' + q.tool + ' without asking', onclick: () => decide(q, 'allow_always') }, 'always'),
        el('button', { type: 'button', class: 'small danger deny', onclick: () => decide(q, 'deny') }, 'deny')));
    tr.dataset.id = q.id;
    return tr;
  }));
}

async function decide(q, decision) {
  try {
    await post('/api/permission', { id: q.id, decision });
    notice(q.tool + ' in ' + q.chat_id + ': ' + decision.replace('_', ' '));
  } catch (e) {
    notice('answer failed: ' + e.message, true);
  }
  refreshPerms();
}

// --- schedules ---

// schedWhen is a schedule's times as written: "cron 0 8 * * 1-5 ·
// Europe/Berlin", "every 30m", "at 2026-12-24T17:00 · Europe/Berlin".
function schedWhen(s) {
  return s.kind + ' ' + s.expr + (s.tz && s.kind !== 'every' ? ' · ' + s.tz : '');
}

// schedNext is an instant on this browser's clock and, for a schedule
// with a zone, on the zone's clock too: "Tue 8 Dec, 08:00 (08:00 CET
// Europe/Berlin)".
function schedNext(at, tz) {
  const d = new Date(at);
  if (isNaN(d)) return '';
  const local = d.toLocaleString([], { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  if (!tz) return local;
  let there = '';
  try { there = d.toLocaleTimeString([], { timeZone: tz, hour: '2-digit', minute: '2-digit', timeZoneName: 'short' }); } catch (e) { there = ''; }
  return there ? local + ' (' + there + ' ' + tz + ')' : local;
}

async function refreshSchedules() {
  let page;
  try { page = await getJSON('/api/schedules'); } catch (e) { $('#sched-section').hidden = true; return; }
  const all = page.schedules || [];
  $('#sched-section').hidden = all.length === 0;
  $('#sched-count').textContent = all.length ? '(' + all.length + ')' : '';
  $('#schedules tbody').replaceChildren(...all.map((s) => {
    const st = s.finished ? 'finished' : s.paused ? 'paused' : 'active';
    const acts = el('td', { class: 'actions' });
    if (!s.finished) {
      acts.append(s.paused
        ? el('button', { type: 'button', class: 'small resume', onclick: () => schedAct(s, 'resume') }, 'resume')
        : el('button', { type: 'button', class: 'small pause', onclick: () => schedAct(s, 'pause') }, 'pause'));
    }
    const rm = el('button', { type: 'button', class: 'small danger remove' }, 'remove');
    rm.onclick = () => {
      if (!rm.classList.contains('confirm')) {
        rm.classList.add('confirm');
        rm.textContent = 'remove for good?';
        setTimeout(() => { rm.classList.remove('confirm'); rm.textContent = 'remove'; }, 5000);
        return;
      }
      schedAct(s, 'remove');
    };
    acts.append(rm);
    const tr = el('tr', {},
      el('td', { 'data-label': 'chat' },
        el('button', { class: 'link chat-id', type: 'button', title: 'recent messages', onclick: () => openChat(s.chat_id) }, s.chat_id)),
      el('td', { 'data-label': 'when' }, el('div', { class: 'when' }, s.kind + ' ' + s.expr),
        s.tz && s.kind !== 'every' ? el('div', { class: 'zone' }, s.tz) : null,
        el('div', { class: 'text meta' }, clip(s.text, 200))),
      el('td', { 'data-label': 'next' }, s.next ? schedNext(s.next, s.tz) : '–'),
      el('td', { 'data-label': 'last fired' }, s.last_fired ? dur((Date.now() - new Date(s.last_fired)) / 1000) + ' ago' : '–'),
      el('td', { 'data-label': 'state', class: 'state' + (s.paused ? ' warn' : '') }, st),
      acts);
    tr.dataset.id = s.id;
    return tr;
  }));
}

async function schedAct(s, action) {
  try {
    await post('/api/schedule', { id: s.id, action });
    notice('schedule ' + s.chat_id + ', ' + schedWhen(s) + ': ' + (action === 'remove' ? 'removed' : action + 'd'));
  } catch (e) {
    notice(action + ' failed: ' + e.message, true);
  }
  refreshSchedules();
}

// --- one chat's recent messages ---

function openChat(chat) {
  state.chat = chat;
  $('#chat-section').hidden = false;
  $('#chat-title').textContent = chat;
  renderSessions();
  refreshChat();
  $('#chat-section').scrollIntoView({ block: 'nearest' });
}

async function refreshChat() {
  const chat = state.chat;
  if (chat === null) return;
  let v;
  try { v = await getJSON('/api/chat?chat=' + encodeURIComponent(chat)); } catch (e) {
    $('#chat-exchanges').replaceChildren(el('li', { class: 'err' }, e.message));
    return;
  }
  if (chat !== state.chat) return;
  const waiting = v.waiting || [];
  $('#chat-waiting').replaceChildren(...(waiting.length ? [el('p', { class: 'meta' }, waiting.length + ' waiting or dead:')] : []),
    ...waiting.map((m) => el('div', { class: 'text msg' }, '[' + m.state + '] ' + clip(m.text, 500))));
  const ol = $('#chat-exchanges');
  if (!v.exchanges.length) {
    ol.replaceChildren(el('li', { class: 'empty' }, 'no replies kept for this chat'));
    return;
  }
  ol.replaceChildren(...v.exchanges.map((x) => {
    const li = el('li', {}, el('div', { class: 'meta' }, clock(x.at), el('span', { class: 'type ' + x.type }, x.type)));
    for (const m of x.messages) {
      li.append(el('div', { class: 'text msg' }, m.gone ? '(message ' + m.id + ' no longer kept)' : m.text + (m.clipped ? '…' : '')));
    }
    if (x.type === 'reply') li.append(el('div', { class: 'text rep' }, x.reply + (x.clipped ? '…' : '')));
    else li.append(el('div', { class: 'text err' }, x.error + (x.clipped ? '…' : '')));
    return li;
  }));
}

// --- the timeline (Server-Sent Events) ---

// BAD are the event types that are bad news (shown in red).
const BAD = ['dead_letter', 'session_failed', 'api_down'];
const TYPES = ['reply', 'dead_letter', 'session_failed', 'session_recovered', 'session_reset', 'api_down', 'api_up',
  'permission_request', 'permission_decided', 'schedule_fired', 'schedule_missed'];

function streamState(live, text) {
  const p = $('#stream');
  p.className = 'stream ' + (live ? 'live' : 'off');
  p.textContent = text;
}

// connect reads the event stream with fetch (an EventSource cannot send
// the token header) and parses its Server-Sent Events; when the stream
// ends or fails it connects again, after the last event seen.
async function connect() {
  if (state.stream) state.stream.abort();
  clearTimeout(connect.t);
  if (!state.token) return;
  const ctl = new AbortController();
  state.stream = ctl;
  const url = '/api/events' + (state.lastSeq !== null ? '?after=' + state.lastSeq : '');
  try {
    const r = await fetch(url, { credentials: 'omit', cache: 'no-store', headers: auth({ Accept: 'text/event-stream' }), signal: ctl.signal });
    if (r.status === 401) { ended(); streamState(false, 'timeline: no session'); return; }
    if (!r.ok || !r.body) throw new Error('HTTP ' + r.status);
    streamState(true, 'timeline: live');
    $('#no-events').textContent = 'no events yet';
    refreshStatus(); refreshDead();
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        sseBlock(buf.slice(0, end));
        buf = buf.slice(end + 2);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (ctl !== state.stream) return;
  // The daemon (or this server) went away: connect again from the last
  // event seen.
  streamState(false, 'timeline: reconnecting…');
  connect.t = setTimeout(connect, 2000);
}

// sseBlock handles one Server-Sent Event (comment lines keep the stream
// alive and are skipped).
function sseBlock(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (type === 'gap') {
    state.lastSeq = null;
    $('#timeline').replaceChildren();
    notice('some events were missed: they are no longer kept', true);
    return;
  }
  if (TYPES.includes(type) && data.length) onEvent({ data: data.join('\n') });
}

let refreshSoon = null;
function onEvent(msg) {
  let ev;
  try { ev = JSON.parse(msg.data); } catch (e) { return; }
  if (state.lastSeq !== null && ev.seq <= state.lastSeq) return;
  state.lastSeq = ev.seq;
  const detail = ev.type === 'reply' ? clip(ev.text, 4000)
    : ev.type === 'dead_letter' ? ev.error
      : ev.type === 'permission_request' ? ev.tool + ': ' + ev.summary
      : ev.type === 'permission_decided' ? ev.tool + ': ' + ev.decision + ' by ' + ev.by + (ev.reason ? ' (' + ev.reason + ')' : '')
      : ev.type === 'schedule_fired' ? 'schedule ' + ev.schedule_id + ', the firing of ' + clock(ev.scheduled_at) + ': message ' + ev.message_id
      : ev.type === 'schedule_missed' ? 'schedule ' + ev.schedule_id + ': ' + ev.count + ' not fired (' + ev.reason + '), ' + clock(ev.first) + '–' + clock(ev.last)
      : ev.reason || '';
  const tone = BAD.includes(ev.type) ? ' err' : ev.type === 'session_reset' || ev.type === 'schedule_missed' ? ' warn' : '';
  const li = el('li', { 'data-seq': String(ev.seq), 'data-type': ev.type },
    el('div', { class: 'meta' },
      el('span', {}, clock(ev.at)),
      el('span', { class: 'type ' + ev.type }, ev.type.replace('_', ' ')),
      ev.chat_id ? el('button', { type: 'button', class: 'link chat-id', onclick: () => openChat(ev.chat_id) }, ev.chat_id) : null),
    detail ? el('div', { class: 'text clip' + tone }, detail) : null);
  const ol = $('#timeline');
  ol.prepend(li);
  if (detail) expandable(li.lastElementChild);
  while (ol.children.length > MAX_EVENTS) ol.lastElementChild.remove();
  $('#no-events').hidden = true;
  if (ev.chat_id && ev.chat_id === state.chat) refreshChat();
  clearTimeout(refreshSoon);
  refreshSoon = setTimeout(() => { refreshStatus(); if (ev.type === 'dead_letter') refreshDead(); }, 150);
  if (ev.type === 'dead_letter') refreshDead();
  if (ev.type === 'permission_request' || ev.type === 'permission_decided') refreshPerms();
  if (ev.type === 'schedule_fired' || ev.type === 'schedule_missed') refreshSchedules();
}

// --- start ---

// session trades the URL's one-time secret for the session token, kept in
// this tab's sessionStorage (so a reload keeps it, another origin never
// sees it).
async function session() {
  const secret = new URLSearchParams(location.search).get('secret');
  // Keep the secret out of the history, spent or not.
  if (location.search) history.replaceState(null, '', '/');
  if (secret) {
    try {
      const r = await fetch('/api/session', {
        method: 'POST', credentials: 'omit', cache: 'no-store',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ secret }),
      });
      const body = await r.json();
      if (r.ok && body.token) sessionStorage.setItem(TOKEN_KEY, body.token);
    } catch (e) { /* below: no token */ }
  }
  state.token = sessionStorage.getItem(TOKEN_KEY) || '';
  return !!state.token;
}

async function start() {
  for (const th of document.querySelectorAll('#sessions th')) {
    th.onclick = () => {
      const k = th.dataset.key;
      if (state.sortKey === k) state.sortDir = -state.sortDir;
      else { state.sortKey = k; state.sortDir = 1; }
      renderSessions();
    };
  }
  $('#filter').oninput = (e) => { state.filter = e.target.value; renderSessions(); };
  $('#chat-close').onclick = () => { state.chat = null; $('#chat-section').hidden = true; renderSessions(); };
  if (!(await session())) {
    ended();
    $('#daemon').textContent = 'no session';
    streamState(false, 'timeline: no session');
    for (const id of ['#no-sessions', '#no-dead', '#no-events']) $(id).textContent = '–';
    return;
  }
  refreshStatus();
  refreshDead();
  refreshPerms();
  refreshSchedules();
  connect();
  setInterval(refreshStatus, 2000);
  setInterval(refreshDead, 10000);
  setInterval(refreshPerms, 5000);
  setInterval(refreshSchedules, 10000);
  setInterval(() => { if (state.chat !== null) refreshChat(); }, 10000);
}

start();
