// moat's live page. Everything shown here may come from an attacker (user
// names from sshd's log, addresses and scan details from forged packets):
// it is inserted with textContent and text nodes only, never as markup.
'use strict';

const S = {
  state: null,     // the daemon's state (/api/state .state)
  samples: [],     // counters over time
  events: [],      // events from the feed, oldest first
  lastSeq: 0,
  now: Date.now(), // the daemon's clock at the last state
  skew: 0,         // daemon clock minus ours, ms
};
const MAX_EVENTS = 5000;
const FEED_ROWS = 200;

// ---- small DOM helpers: text only -------------------------------------

function el(tag, cls, ...kids) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const k of kids) append(e, k);
  return e;
}
function append(e, k) {
  if (k === null || k === undefined || k === false) return;
  if (Array.isArray(k)) { k.forEach((x) => append(e, x)); return; }
  e.append(k instanceof Node ? k : document.createTextNode(String(k)));
}
function svg(tag, attrs, text) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function fill(id, ...kids) {
  const box = document.getElementById(id);
  box.replaceChildren();
  append(box, kids);
  return box;
}
function empty(text) { return el('div', 'empty', text); }

function nowMs() { return Date.now() + S.skew; }
function fmtNum(n) { return (n || 0).toLocaleString('en-US'); }
function fmtDur(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60 ? ' ' + (s % 60) + 's' : '');
  if (s < 86400) return Math.floor(s / 3600) + 'h' + (s % 3600 >= 60 ? ' ' + Math.floor((s % 3600) / 60) + 'm' : '');
  return Math.floor(s / 86400) + 'd' + (s % 86400 >= 3600 ? ' ' + Math.floor((s % 86400) / 3600) + 'h' : '');
}
function ago(t) {
  const ms = nowMs() - Date.parse(t);
  return isFinite(ms) ? fmtDur(ms) + ' ago' : '';
}
function until(t) {
  if (!t) return 'until removed';
  const ms = Date.parse(t) - nowMs();
  return isFinite(ms) ? 'for ' + fmtDur(ms) : '';
}
function clock(t) {
  const d = new Date(t);
  return isNaN(d) ? '' : d.toLocaleTimeString('en-GB', { hour12: false });
}
function lvl(n) { return el('span', 'lvl l' + Math.max(0, Math.min(5, n | 0)), 'L' + (n | 0)); }
function chip(text, kind) { return el('span', 'chip' + (kind ? ' ' + kind : ''), text); }
// addrButton opens one address's story.
function addrButton(a) {
  const b = el('button', 'addr', a);
  b.type = 'button';
  b.addEventListener('click', () => showAddr(a));
  return b;
}
function hostOf(prefix) {
  if (!prefix) return '';
  const m = /^(.*)\/(32|128)$/.exec(prefix);
  return m ? m[1] : prefix;
}
function bars(rows, color) {
  if (!rows.length) return empty('nothing yet');
  const max = Math.max(...rows.map((r) => r.v), 1);
  return el('div', 'bars', rows.map((r) => {
    const f = el('div', 'fill');
    f.style.width = (100 * r.v / max).toFixed(1) + '%';
    if (color) f.style.setProperty('--c', color);
    const name = el('div', 'name', r.name);
    name.title = r.name;
    return el('div', 'row', name, el('div', 'track', f), el('div', 'v', fmtNum(r.v)));
  }));
}

// ---- what events mean -------------------------------------------------

const KINDS = [
  { key: 'scanban', label: 'scan bans', c: 'var(--ban)' },
  { key: 'loginban', label: 'login bans', c: 'var(--login)' },
  { key: 'otherban', label: 'other bans', c: 'var(--other)' },
  { key: 'scan', label: 'scans detected', c: 'var(--scan)' },
  { key: 'door', label: 'doors opened', c: 'var(--door)' },
];
function kindOf(e) {
  if (e.kind === 'ban') return e.origin === 'scan' ? 'scanban' : e.origin === 'login' ? 'loginban' : 'otherban';
  if (e.kind === 'scan') return 'scan';
  if (e.kind === 'door' && e.action === 'opened') return 'door';
  return null;
}
function describe(e) {
  switch (e.kind) {
    case 'ban': {
      let s = 'banned ' + until(e.until) + ' by ' + (e.origin || '?');
      if (e.reason) s += ': ' + e.reason;
      if (e.count > 1) s += ' (ban #' + e.count + ')';
      if (e.host) s += ' from ' + e.host;
      return s;
    }
    case 'unban': return 'ban lifted (' + (e.origin || 'manual') + ')';
    case 'scan': {
      let s = 'scan reached level ' + e.level;
      if (e.types) s += ': ' + e.types;
      if (e.probes) s += ', ' + fmtNum(e.probes) + ' probes';
      if (e.port_count) s += ' on ' + fmtNum(e.port_count) + ' ports';
      return s;
    }
    case 'door': {
      let s = 'door ' + (e.door || '?') + ' ' + (e.action || '');
      if (e.ports && e.ports.length) s += ' ' + e.ports.join(' ');
      if (e.action === 'opened' && e.until) s += ' ' + until(e.until);
      return s;
    }
    default: return e.kind + (e.reason ? ': ' + e.reason : '');
  }
}
function badge(e) {
  const k = e.kind === 'ban' ? 'ban' : e.kind === 'scan' ? 'scan' : e.kind === 'door' ? 'door' : 'unban';
  return chip(e.kind, k);
}

// ---- the live feed ----------------------------------------------------

function feedRow(e, fresh) {
  const li = el('li', fresh ? 'fresh' : '', el('span', 't', clock(e.time)), el('span', '', badge(e)),
    el('span', 'what', e.prefix ? addrButton(hostOf(e.prefix)) : '', ' ', describe(e)));
  li.dataset.seq = e.seq;
  li.dataset.kind = e.kind;
  return li;
}
function addEvent(e, fresh) {
  if (e.seq && e.seq <= S.lastSeq) return;
  S.lastSeq = e.seq || S.lastSeq;
  S.events.push(e);
  if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
  const feed = document.getElementById('feed');
  feed.prepend(feedRow(e, fresh));
  while (feed.children.length > FEED_ROWS) feed.lastChild.remove();
  document.getElementById('feed-count').textContent = fmtNum(S.events.length) + ' events';
}

function connect() {
  const live = document.getElementById('live');
  const text = document.getElementById('live-text');
  const es = new EventSource('/events');
  let replaying = true;
  es.onopen = () => { live.classList.add('on'); text.textContent = 'live'; };
  es.onerror = () => { live.classList.remove('on'); text.textContent = 'reconnecting…'; };
  es.addEventListener('moat', (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch { return; }
    addEvent(e, !replaying);
    scheduleRefresh();
    scheduleTimeline();
  });
  // Events replayed at connect arrive in one burst; later ones flash.
  setTimeout(() => { replaying = false; }, 1500);
}

// ---- the timeline -----------------------------------------------------

let timelineTimer = 0;
function scheduleTimeline() {
  if (!timelineTimer) timelineTimer = setTimeout(() => { timelineTimer = 0; drawTimeline(); }, 250);
}
function drawTimeline() {
  const W = 1000, H = 220, L = 40, R = 46, T = 10, B = 26;
  const now = nowMs();
  let first = now;
  for (const e of S.events) { const t = Date.parse(e.time); if (t < first) first = t; }
  if (S.samples.length) first = Math.min(first, Date.parse(S.samples[0].t));
  const spans = [5, 15, 30, 60, 180, 360, 720, 1440].map((m) => m * 60000);
  const span = spans.find((s) => now - first <= s) || spans[spans.length - 1];
  const N = 40, step = span / N, start = now - span;
  const buckets = Array.from({ length: N }, () => Object.fromEntries(KINDS.map((k) => [k.key, 0])));
  for (const e of S.events) {
    const k = kindOf(e);
    const t = Date.parse(e.time);
    if (!k || t < start || t > now) continue;
    buckets[Math.min(N - 1, Math.floor((t - start) / step))][k]++;
  }
  const totals = buckets.map((b) => KINDS.reduce((s, k) => s + b[k.key], 0));
  // A round top, so the axis shows whole events.
  const top = Math.max(1, ...totals);
  const ticks = Math.min(4, top);
  const ymax = Math.ceil(top / ticks) * ticks;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' });
  const pw = W - L - R, ph = H - T - B;
  for (let i = 0; i <= ticks; i++) {
    const y = T + ph * i / ticks;
    s.append(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: 'grid-line' }));
    s.append(svg('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' }, ymax * (ticks - i) / ticks));
  }
  const bw = pw / N;
  buckets.forEach((b, i) => {
    let y = T + ph;
    for (const k of KINDS) {
      const v = b[k.key];
      if (!v) continue;
      const h = ph * v / ymax;
      y -= h;
      const r = svg('rect', { x: L + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, rx: 2 });
      r.style.fill = k.c;
      r.append(svg('title', {}, `${clock(start + i * step)}: ${v} ${k.label}`));
      s.append(r);
    }
  });
  // Active bans, from the sampled counters, on the right-hand axis.
  const pts = S.samples.map((x) => [Date.parse(x.t), x.bans]).filter(([t]) => t >= start);
  if (pts.length) {
    const bmax = Math.max(1, ...pts.map((p) => p[1]));
    const d = pts.map(([t, v], i) => (i ? 'L' : 'M') + (L + pw * (t - start) / span).toFixed(1) + ' ' + (T + ph - ph * v / bmax).toFixed(1)).join(' ');
    s.append(svg('path', { d, class: 'bans-line' }));
    const [lt, lv] = pts[pts.length - 1];
    const dot = svg('circle', { cx: (L + pw * (lt - start) / span).toFixed(1), cy: (T + ph - ph * lv / bmax).toFixed(1), r: 4 });
    dot.style.fill = 'var(--ban)';
    dot.append(svg('title', {}, lv + ' active bans'));
    s.append(dot);
    s.append(svg('text', { x: W - R + 6, y: T + 4 }, bmax));
    s.append(svg('text', { x: W - R + 6, y: T + ph + 4 }, 0));
  }
  for (let i = 0; i <= 4; i++) {
    const t = start + span * i / 4;
    s.append(svg('text', { x: L + pw * i / 4, y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, i === 4 ? 'now' : clock(t).slice(0, 5)));
  }
  fill('timeline', s);
  const legend = KINDS.map((k) => { const x = el('span', '', k.label); x.style.setProperty('--c', k.c); return x; });
  const bl = el('span', '', 'active bans (line)');
  bl.style.setProperty('--c', 'var(--ban)');
  fill('legend', legend, bl);
}

// spark draws how fast a sampled counter grew (per minute), oldest to now.
function spark(key, color, label) {
  const pts = S.samples.map((x) => [Date.parse(x.t), x[key] || 0]);
  if (pts.length < 3) return null;
  const rates = [];
  for (let i = 1; i < pts.length; i++) {
    const dt = (pts[i][0] - pts[i - 1][0]) / 60000;
    rates.push(dt > 0 ? Math.max(0, pts[i][1] - pts[i - 1][1]) / dt : 0);
  }
  const W = 300, H = 44, max = Math.max(1, ...rates);
  const d = rates.map((r, i) => (i ? 'L' : 'M') + (W * i / Math.max(1, rates.length - 1)).toFixed(1) + ' ' + (H - 2 - (H - 4) * r / max).toFixed(1)).join(' ');
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'spark' });
  const path = svg('path', { d });
  path.style.stroke = color;
  s.append(path);
  return el('div', 'sparkbox', el('div', 'sub', label + ' per minute, last ' + fmtDur(pts[pts.length - 1][0] - pts[0][0]) + ' (peak ' + Math.round(max) + ')'), s);
}

// ---- the panels from the daemon's state -------------------------------

let refreshTimer = 0;
function scheduleRefresh() {
  if (!refreshTimer) refreshTimer = setTimeout(() => { refreshTimer = 0; refresh(); }, 400);
}
async function refresh() {
  try {
    const r = await fetch('/api/state', { cache: 'no-store', credentials: 'same-origin' });
    if (r.status === 401) { fill('guard', 'token expired: run moat page url'); return; }
    if (!r.ok) throw new Error(r.status);
    const j = await r.json();
    S.skew = Date.parse(j.now) - Date.now();
    S.state = j.state || {};
    S.samples = j.samples || [];
    render();
    drawTimeline();
  } catch (err) {
    const g = document.getElementById('guard');
    g.className = 'pill bad';
    g.textContent = 'daemon not answering';
  }
}

function tile(label, value, sub, color) {
  const t = el('div', 'tile', el('div', 'l', label), el('div', 'n', value), sub ? el('div', 's', sub) : null);
  if (color) t.style.setProperty('--c', color);
  return t;
}

function render() {
  const d = S.state;
  const st = d.status || {};
  const scan = st.scan || {};
  const rep = scan.report || {};
  const login = st.login || null;
  const bans = d.bans || [];
  const grants = d.grants || [];

  const g = document.getElementById('guard');
  const guarding = st.enforcing && st.table_present;
  g.className = 'pill ' + (guarding ? 'good' : 'bad');
  g.textContent = guarding ? 'guarding' : st.enforcing ? 'table missing' : 'firewall off';
  document.getElementById('meta').textContent = [
    st.started ? 'up ' + fmtDur(nowMs() - Date.parse(st.started)) : '',
    st.config_source || '',
    (st.open || []).length ? 'open ' + st.open.join(' ') : '',
  ].filter(Boolean).join(' · ');

  const kernel = st.counters || {};
  let dropped = 0;
  for (const [name, c] of Object.entries(kernel)) if (name !== 'output') dropped += c.packets || 0;
  const lastHour = S.events.filter((e) => nowMs() - Date.parse(e.time) < 3600e3);
  fill('tiles',
    tile('Active bans', fmtNum(st.bans), Object.entries(st.bans_by_origin || {}).map(([k, v]) => k + ' ' + v).join(' · ') || 'none', 'var(--ban)'),
    tile('Scanners tracked', fmtNum((rep.totals || {}).sources), fmtNum(scan.blocked) + ' banned since start', 'var(--scan)'),
    tile('Login failures', login ? fmtNum(login.events) : 'off', login ? fmtNum(login.banned) + ' bans · ' + fmtNum(login.counting) + ' counting' : 'login guard off', 'var(--login)'),
    tile('Open grants', fmtNum(grants.length), fmtNum((d.doors || []).length) + ' doors', 'var(--door)'),
    tile('Packets stopped', fmtNum(dropped), 'by the ruleset since it was installed', 'var(--accent)'),
    tile('Events, last hour', fmtNum(lastHour.length), S.lastSeq ? 'last #' + S.lastSeq : 'none yet', 'var(--other)'),
  );

  // Top sources, with what moat did about each.
  const banned = new Map(bans.map((b) => [b.addr, b]));
  const srcs = rep.sources || [];
  if (!srcs.length) {
    fill('sources', empty('no scanner seen in the window'));
  } else {
    const geo = (s) => [s.country, s.asn ? 'AS' + s.asn : '', s.as_org, s.os].filter(Boolean).join(' · ');
    const hasGeo = srcs.some((s) => geo(s));
    const head = el('tr', '', ['Source', 'Level', 'Scan types', 'Probes', 'Ports', 'Last seen', 'moat did'].map((h) => el('th', '', h)));
    if (hasGeo) head.insertBefore(el('th', '', 'Where'), head.children[2]);
    const rows = srcs.map((s) => {
      const b = banned.get(s.addr);
      const ports = s.ports + (s.port_low ? ' (' + s.port_low + (s.port_high !== s.port_low ? '–' + s.port_high : '') + ')' : '');
      const tr = el('tr', '',
        el('td', 'addr', addrButton(s.addr)),
        el('td', '', lvl(s.level)),
        el('td', '', (s.types || []).map((t) => chip(t, 'scan'))),
        el('td', 'num', fmtNum(s.packets)),
        el('td', 'num', ports),
        el('td', 'sub', ago(s.last)),
        el('td', '', b ? chip('banned ' + until(b.expires), 'ban') : chip('watched')));
      if (hasGeo) tr.insertBefore(el('td', 'sub', geo(s)), tr.children[2]);
      return tr;
    });
    fill('sources', el('table', '', el('thead', '', head), el('tbody', '', rows)));
  }

  // Scan types: tracked sources per type.
  const types = new Map();
  for (const s of srcs) for (const t of s.types || []) types.set(t, (types.get(t) || 0) + 1);
  fill('types', bars([...types].map(([name, v]) => ({ name, v })).sort((a, b) => b.v - a.v), 'var(--scan)'),
    el('div', 'sub', 'sources per scan type · ' + fmtNum((rep.totals || {}).probes) + ' probes scored'),
    spark('scan_probes', 'var(--scan)', 'probes'));

  fill('ports', bars((rep.ports || []).slice(0, 10).map((p) => ({ name: p.proto + '/' + p.port, v: p.packets })), 'var(--accent)'));

  if (!login) {
    fill('login', empty('the login guard is off'));
  } else {
    const kv = el('div', 'kv',
      el('div', '', el('b', '', fmtNum(login.events)), el('span', '', 'failures counted')),
      el('div', '', el('b', '', fmtNum(login.banned)), el('span', '', 'bans made')),
      el('div', '', el('b', '', fmtNum(login.counting)), el('span', '', 'addresses counting')),
      el('div', '', el('b', '', fmtNum(login.unverified_lines)), el('span', '', 'unverified lines ignored')));
    const users = (login.top_users || []).map((u) => ({ name: u.user, v: u.attempts }));
    fill('login', kv, spark('login_failures', 'var(--login)', 'failures'), el('div', 'sub', 'user names tried'), bars(users, 'var(--login)'));
  }

  document.getElementById('bans-count').textContent = fmtNum(bans.length) + ' active';
  if (!bans.length) {
    fill('bans', empty('no bans'));
  } else {
    const recent = [...bans].sort((a, b) => Date.parse(b.created) - Date.parse(a.created)).slice(0, 12);
    fill('bans', el('table', '', el('tbody', '', recent.map((b) => el('tr', '',
      el('td', 'addr', addrButton(b.addr)),
      el('td', '', chip(b.origin, b.origin === 'scan' ? 'scan' : b.origin === 'login' ? 'login' : '')),
      el('td', 'sub', (b.reason ? b.reason + ' · ' : '') + until(b.expires) + (b.count > 1 ? ' · #' + b.count : '')))))));
  }

  const doors = d.doors || [];
  const doorBox = [];
  for (const dr of doors) {
    const open = grants.filter((x) => x.door === dr.name);
    doorBox.push(el('div', 'door',
      el('div', '', el('b', '', dr.name), ' ', chip(dr.mode), ' ', chip((dr.sequence || []).length + ' knocks'),
        ' opens ', (dr.open || []).join(' '), ' for ', dr.open_for),
      open.length ? open.map((x) => el('div', 'sub', '→ ', addrButton(x.addr), ' on ', x.port, ' · ', fmtDur(x.seconds_left * 1000), ' left'))
        : el('div', 'sub', 'closed to everyone')));
  }
  for (const x of grants.filter((x) => !doors.some((dr) => dr.name === x.door))) {
    doorBox.push(el('div', 'door', el('div', '', chip(x.mode || 'grant', 'door'), ' ', addrButton(x.addr), ' on ', x.port, ' · ', fmtDur(x.seconds_left * 1000), ' left')));
  }
  if (st.spa) doorBox.push(el('div', 'sub', 'SPA on ' + (st.spa.ports || []).join(' ') + ': ' + fmtNum(st.spa.accepted) + ' accepted, ' + fmtNum(Object.values(st.spa.refused || {}).reduce((a, b) => a + b, 0)) + ' refused'));
  fill('doors', doorBox.length ? doorBox : empty('no doors configured'));

  const prot = st.protected || [];
  fill('protected', prot.length ? el('table', '', el('tbody', '', prot.map((p) => el('tr', '',
    el('td', 'addr', p.addr || p.prefix), el('td', 'sub', p.why))))) : empty('none'));
}

// ---- one address's story ----------------------------------------------

async function showAddr(a) {
  const dlg = document.getElementById('detail');
  document.getElementById('detail-title').textContent = a;
  fill('detail-body', empty('loading…'));
  if (!dlg.open) dlg.showModal();
  let j;
  try {
    const r = await fetch('/api/addr?addr=' + encodeURIComponent(a), { cache: 'no-store', credentials: 'same-origin' });
    const text = await r.text();
    try { j = JSON.parse(text); } catch { throw new Error(r.status + ' ' + text.slice(0, 80)); }
    if (!r.ok) throw new Error(j.error || r.status);
  } catch (err) {
    fill('detail-body', empty('cannot read it: ' + err.message));
    return;
  }
  const parts = [];
  if (j.protected) parts.push(el('h3', '', 'Protected'), el('div', '', j.protected));
  if ((j.allowed || []).length) parts.push(el('h3', '', 'Allowed'), el('div', '', j.allowed.join(', ')));
  parts.push(el('h3', '', 'Bans'), (j.bans || []).length ? el('div', '', j.bans.map((b) =>
    el('div', '', chip(b.origin, 'ban'), ' ', b.addr, ' ', until(b.expires), b.reason ? ' · ' + b.reason : '', b.count > 1 ? ' · ban #' + b.count : ''))) : el('div', 'sub', 'not banned'));
  if (j.scan) {
    const s = j.scan;
    parts.push(el('h3', '', 'Scan'), el('div', '', lvl(s.level), ' ', (s.types || []).map((t) => chip(t, 'scan')),
      ' ', fmtNum(s.packets), ' probes, ', fmtNum(s.ports), ' ports (', s.port_low, '–', s.port_high, '), first ', ago(s.first), ', last ', ago(s.last)));
  }
  const lf = Object.entries(j.login_failures || {});
  parts.push(el('h3', '', 'Login failures being counted'), lf.length ? el('div', '', lf.map(([k, v]) => chip(k + ': ' + v, 'login'))) : el('div', 'sub', 'none'));
  parts.push(el('h3', '', 'Grants'), (j.grants || []).length ? el('div', '', j.grants.map((x) => el('div', '', x.door, ' ', x.port, ' · ', fmtDur(x.seconds_left * 1000), ' left'))) : el('div', 'sub', 'none'));
  const evs = S.events.filter((e) => hostOf(e.prefix) === a || (e.prefix && e.prefix.includes('/') && e.prefix.split('/')[0] === a));
  parts.push(el('h3', '', 'Events'), evs.length ? el('ol', 'feed', evs.slice(-30).reverse().map((e) => feedRow(e, false))) : el('div', 'sub', 'none in the feed'));
  fill('detail-body', parts);
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('detail-close').addEventListener('click', () => document.getElementById('detail').close());
  refresh();
  connect();
  setInterval(refresh, 5000);
  setInterval(drawTimeline, 15000);
});
