// studio dashboard: tabs, in-place script edits, the live Produce view.
// No framework: the server renders the page; this file adds behaviour.
'use strict';
const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(body || {}), credentials: 'same-origin',
  });
  let data = {};
  try { data = await r.json(); } catch (e) { data = {error: r.status + ' ' + r.statusText}; }
  return {ok: r.ok, status: r.status, data};
}

// Tabs: the URL's #fragment names the tab.
function showTab() {
  const id = (location.hash || '#story').slice(1);
  const tab = document.getElementById(id);
  if (!tab || !tab.classList.contains('tab')) return;
  $$('.tab').forEach(t => t.classList.toggle('active', t === tab));
  $$('nav a').forEach(a => a.classList.toggle('active', a.dataset.tab === id));
}
window.addEventListener('hashchange', showTab);
showTab();

// Buttons that POST (build, cancel) and show the answer beside them.
document.addEventListener('click', async ev => {
  const b = ev.target.closest('button[data-post]');
  if (!b) return;
  const out = b.parentElement.querySelector('.result');
  if (out && b.classList.contains('write')) out.textContent = 'writing with the LLM…';
  const r = await post(b.dataset.post);
  if (out && r.ok && r.data.placed) {
    out.textContent = 'published ' + r.data.placed.length + ' files to ' + r.data.to + '; ' + r.data.rescan;
    refresh(['story']);
    return;
  }
  if (out && r.ok && r.data.wrote) {
    out.textContent = 'wrote ' + r.data.wrote;
    refresh(['script']);
    return;
  }
  if (out && !r.ok && r.data.log) {
    showLog(out, r.data.error, r.data.log);
    return;
  }
  if (out) out.textContent = r.ok ? (r.data.started ? 'build started' : r.data.cancelled ? 'cancelling…'
    : r.data.started === false ? 'a build is running' : 'no build is running') : (r.data.error || 'refused');
});

// Script: Enter saves an edited line or action; Esc puts the text back.
function wireScript() {
  $$('.screenplay [contenteditable]').forEach(el => {
    el.dataset.saved = el.textContent;
    el.addEventListener('keydown', ev => {
      if (ev.key === 'Enter') { ev.preventDefault(); save(el); }
      if (ev.key === 'Escape') { el.textContent = el.dataset.saved; el.blur(); }
    });
    el.addEventListener('blur', () => { if (el.textContent !== el.dataset.saved) save(el); });
  });
}
async function save(el) {
  const shot = el.closest('.shot');
  const ep = el.closest('.screenplay').dataset.episode;
  const diag = $('#script pre.diag');
  const text = el.textContent;
  const base = {episode: ep, scene: shot.dataset.scene, shot: shot.dataset.shot};
  const r = el.dataset.field === 'line'
    ? await post('/api/script/line', {...base, index: Number(el.dataset.index), text})
    : await post('/api/script/action', {...base, action: text});
  el.classList.remove('saved', 'refused');
  if (r.ok) {
    el.dataset.saved = text;
    el.classList.add('saved');
    diag.hidden = true;
  } else {
    el.classList.add('refused');
    diag.textContent = r.data.diagnostic || r.data.error || ('refused: ' + r.status);
    diag.hidden = false;
  }
}
wireScript();

// The writer's messages (what the terminal would show) under its button.
function showLog(out, head, log) {
  out.textContent = head;
  const pre = document.createElement('pre');
  pre.className = 'diag';
  pre.textContent = log;
  out.appendChild(pre);
}

// Review: approve or reject a candidate; approvals.yaml records it and the
// watcher's build (in Produce) makes what the decision changes.
document.addEventListener('click', async ev => {
  const b = ev.target.closest('button.review-approve, button.review-reject');
  if (!b) return;
  const card = b.closest('.candidate');
  const out = $('.result', card);
  const body = {hash: card.dataset.hash, decision: b.classList.contains('review-approve') ? 'approve' : 'reject'};
  if (body.decision === 'reject') body.category = $('select.category', card).value;
  $$('button', card).forEach(x => { x.disabled = true; });
  const r = await post('/api/review', body);
  const diag = $('#review pre.diag');
  if (r.ok) {
    out.textContent = r.data.recorded;
    card.classList.add('decided', body.decision === 'approve' ? 'approved' : 'rejected');
    diag.hidden = true;
  } else {
    $$('button', card).forEach(x => { x.disabled = false; });
    out.textContent = 'not recorded';
    diag.textContent = r.data.diagnostic || r.data.error || ('refused: ' + r.status);
    diag.hidden = false;
  }
});

// Script: Rewrite asks the LLM for a shot's or a scene's dialogue again.
document.addEventListener('click', async ev => {
  const b = ev.target.closest('button.rewrite');
  if (!b) return;
  const shot = b.closest('.shot');
  const scene = b.closest('.scene');
  const out = b.parentElement.querySelector('.result');
  const body = {episode: b.closest('.screenplay').dataset.episode, scene: scene.dataset.scene};
  if (shot) body.shot = shot.dataset.shot;
  b.disabled = true;
  out.textContent = 'writing with the LLM…';
  const r = await post('/api/script/rewrite', body);
  b.disabled = false;
  if (r.ok) {
    out.textContent = 'rewrote ' + r.data.rewrote;
    refresh(['script']);
  } else {
    showLog(out, r.data.error || ('refused: ' + r.status), r.data.log || '');
  }
});

// An image the browser cannot show (the sim profile's stand-in files) says so.
document.addEventListener('error', ev => {
  const img = ev.target;
  if (!(img instanceof HTMLImageElement) || img.dataset.failed) return;
  img.dataset.failed = '1';
  const note = document.createElement('p');
  note.className = 'muted';
  note.textContent = 'The built image cannot be shown (' + img.getAttribute('src') + ').';
  img.replaceWith(note);
}, true);

// Publish: chapter links seek the episode's player.
document.addEventListener('click', ev => {
  const a = ev.target.closest('a[data-seek]');
  if (!a) return;
  ev.preventDefault();
  const v = a.closest('details').querySelector('video');
  v.currentTime = Number(a.dataset.seek);
  v.play();
});

// Produce: the build's typed events over SSE; every node by scene and shot.
// `used`: the pools this build's nodes start on or were queued in; the
// others (a profile's idle services) are not shown.
const produce = {seen: new Map(), nodes: new Map(), pools: [], busy: [], used: new Set(), running: false, expected: new Map()};
// Seconds of work a pool still has (queued and running jobs, as earlier
// builds measured them), spread over its slots.
function eta(pool) {
  let left = 0;
  produce.expected.forEach((e, id) => {
    const el = produce.nodes.get(id);
    if (e.pool === pool && el && ['queued', 'running'].includes(el.dataset.state)) left += e.seconds;
  });
  const slots = Math.max(1, Math.min(produce.pools[pool].slots, 1e6));
  return left / slots;
}
function group(id) {
  const path = id.slice(id.indexOf(':') + 1).split('/');
  return path.length >= 3 ? path.slice(0, 3).join('/') : path.length === 2 ? path.join('/') : path[0];
}
function renderPools() {
  $('#pools').innerHTML = '';
  produce.pools.forEach((p, i) => {
    if (!produce.used.has(i) && !produce.busy[i]) return;
    const div = document.createElement('div');
    div.className = 'pool';
    const used = produce.busy[i] || 0;
    div.innerHTML = '<b></b><span class="bar"><i></i></span><span></span>';
    div.children[0].textContent = p.name;
    div.querySelector('i').style.width = (p.slots ? Math.min(100, 100 * used / p.slots) : 0) + '%';
    // `inline` work takes no slot: its pool is unbounded.
    const unbounded = p.slots > 1e6;
    if (unbounded) div.querySelector('.bar').hidden = true;
    const left = produce.running ? eta(i) : 0;
    div.children[2].textContent = (unbounded ? used + ' running, unbounded' : used + ' / ' + p.slots + ' slots')
      + (p.hosts.length ? ' · ' + p.hosts.join(', ') : '') + (left >= 1 ? ' · about ' + Math.round(left) + ' s left' : '');
    $('#pools').append(div);
  });
}
function setNode(id, state, title) {
  const was = produce.seen.get(id) || {};
  produce.seen.set(id, {state, title: title || was.title, error: was.error});
  const el = produce.nodes.get(id);
  if (!el) return;
  el.className = 'node ' + state;
  el.dataset.state = state;
  if (title) el.title = title;
}
function summary() {
  const count = {};
  produce.nodes.forEach(el => { count[el.dataset.state] = (count[el.dataset.state] || 0) + 1; });
  $('#produce-summary').textContent = Object.entries(count).map(([k, v]) => v + ' ' + k).join(' · ');
}
function onStarted(d) {
  // A build that grows (the review loop's rounds) announces its whole plan
  // again: the nodes it already settled keep their state.
  if (!produce.running) produce.seen.clear();
  const used = produce.running ? produce.used : new Set();
  produce.nodes.clear();
  produce.expected.clear();
  produce.pools = d.pools; produce.busy = d.pools.map(() => 0); produce.running = true;
  produce.used = new Set([...used, ...d.nodes.map(n => n.pool)]);
  const box = $('#nodes');
  box.innerHTML = '';
  const groups = new Map();
  d.nodes.forEach(n => {
    const g = group(n.id);
    if (!groups.has(g)) {
      const div = document.createElement('div');
      div.className = 'group';
      div.innerHTML = '<h4></h4>';
      div.firstChild.textContent = g;
      groups.set(g, div);
      box.append(div);
    }
    const el = document.createElement('span');
    el.className = 'node planned'; el.dataset.state = 'planned'; el.dataset.id = n.id;
    el.textContent = n.id.slice(0, n.id.indexOf(':'));
    el.title = n.id;
    groups.get(g).append(el);
    produce.nodes.set(n.id, el);
    // Settled (or started) before this plan named it: a node a pass of
    // the review loop made before the whole plan was known.
    const k = produce.seen.get(n.id);
    if (k) {
      setNode(n.id, k.state, k.title);
      if (k.error) el.dataset.error = k.error;
    }
  });
  renderPools();
  $('#build-state').textContent = 'building…';
}
const handlers = {
  build_started: onStarted,
  node_queued: d => { produce.used.add(d.pool); produce.expected.set(d.id, {pool: d.pool, seconds: d.expected_seconds || 0}); setNode(d.id, 'queued'); renderPools(); },
  node_started: d => { setNode(d.id, 'running', d.id + ' · ' + d.engine + (d.host ? ' on ' + d.host : '')); produce.busy[d.pool]++; renderPools(); },
  node_progress: d => { const el = produce.nodes.get(d.id); if (el && d.fraction != null) el.style.backgroundImage = 'linear-gradient(90deg,#4a7fd8 ' + (100 * d.fraction) + '%,transparent 0)'; },
  node_retrying: d => { produce.used.add(d.pool); setNode(d.id, 'queued', d.id + ': retrying: ' + d.error); },
  node_finished: d => { setNode(d.id, d.status === 'built' ? 'built' : 'failed', d.error ? d.id + ': ' + d.error : d.id);
    if (d.error) produce.seen.get(d.id).error = d.error;
    if (d.error && produce.nodes.get(d.id)) produce.nodes.get(d.id).dataset.error = d.error;
    produce.busy[d.pool] = Math.max(0, produce.busy[d.pool] - 1);
    renderPools();
  },
  node_cached: d => setNode(d.id, 'cached'),
  node_fetched: d => setNode(d.id, 'fetched'),
  node_skipped: d => setNode(d.id, 'skipped', d.id + (d.error ? ': ' + d.error : '')),
  build_finished: d => {
    produce.running = false;
    produce.busy = produce.busy.map(() => 0); renderPools();
    $('#build-state').textContent = d.interrupted ? 'build cancelled' : d.superseded ? 'build superseded' : 'build finished';
    // The tabs that show built things, once (the server answers when the
    // watcher has saved this build's state).
    refresh(['story', 'publish', 'cast', 'review']);
  },
};
function connect() {
  const es = new EventSource('/events');
  Object.keys(handlers).forEach(name => es.addEventListener(name, ev => {
    handlers[name](JSON.parse(ev.data));
    summary();
  }));
  es.onerror = () => { $('#build-state').textContent = 'studio not reachable; retrying…'; };
}
connect();

// After a build: the server-rendered tabs that show built things, fetched once.
async function refresh(ids) {
  const url = new URL(location.href);
  url.hash = '';
  url.searchParams.set('settled', '1');
  const r = await fetch(url, {cache: 'no-store', credentials: 'same-origin'});
  if (!r.ok) return;
  const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
  ids.forEach(id => {
    const fresh = doc.getElementById(id), old = document.getElementById(id);
    if (!fresh || !old) return;
    const openEps = $$('details[open]', old).map(d => d.dataset.episode);
    const players = new Map($$('video', old).map(v => [v.closest('details').dataset.episode, v]));
    old.innerHTML = fresh.innerHTML;
    if (id === 'script') wireScript();
    $$('details', old).forEach(d => { if (openEps.includes(d.dataset.episode)) d.open = true; });
    // A player keeps playing when its episode did not change, and a new
    // build of the episode picks up where the old one was.
    $$('video', old).forEach(v => {
      const before = players.get(v.closest('details').dataset.episode);
      if (!before) return;
      if (before.dataset.hash === v.dataset.hash) { v.replaceWith(before); return; }
      const t = before.currentTime, playing = !before.paused;
      v.addEventListener('loadedmetadata', () => {
        v.currentTime = Math.min(t, v.duration || t);
        if (playing) v.play();
      }, {once: true});
    });
  });
}

// A node: `studio why` and its outputs, inline.
document.addEventListener('click', async ev => {
  const n = ev.target.closest('.node');
  if (!n) return;
  const r = await fetch('/api/why?node=' + encodeURIComponent(n.dataset.id), {cache: 'no-store', credentials: 'same-origin'});
  const d = await r.json();
  const box = $('#why');
  box.hidden = false;
  $('h3', box).textContent = n.dataset.id;
  $('pre', box).textContent = (n.dataset.error ? 'failed: ' + n.dataset.error + '\n\n' : '') + (d.why || d.error || '');
  const outs = $('.outputs', box);
  outs.innerHTML = '';
  (d.outputs || []).forEach(o => {
    const tag = o.mime.startsWith('image/') ? 'img' : o.mime.startsWith('video/') ? 'video'
      : o.mime.startsWith('audio/') ? 'audio' : 'a';
    const el = document.createElement(tag);
    if (tag === 'a') { el.href = o.url; el.textContent = o.suffix + ' (' + o.size + ' bytes)'; }
    else { el.src = o.url; if (tag !== 'img') el.controls = true; }
    outs.append(el);
  });
});
