"""The console's page, script and style, kept in Python so every install ships them.

No framework and no build step: one page, vanilla JavaScript, CSS for a phone first. All
customer data is put on the page with ``textContent`` (never ``innerHTML``), and the
Content-Security-Policy allows scripts and styles only from this origin.
"""

from __future__ import annotations

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Proxima console</title>
<link rel="stylesheet" href="/static/console.css">
<link rel="manifest" href="/manifest.webmanifest">
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
<script src="/static/console.js" defer></script>
</head>
<body>
<main id="app">
  <section id="login" hidden>
    <h1>Proxima</h1>
    <form id="login-form" autocomplete="on">
      <label>Store <input id="login-store" name="store" required autocomplete="organization"></label>
      <label>Associate id <input id="login-associate" name="associate" required autocomplete="username"></label>
      <label>Password <input id="login-password" name="password" type="password" required autocomplete="current-password"></label>
      <button type="submit" id="login-submit">Sign in</button>
      <p id="login-error" class="error" role="alert"></p>
    </form>
  </section>
  <section id="console" hidden>
    <header>
      <div>
        <strong id="me-name"></strong>
        <span id="me-store" class="muted"></span>
      </div>
      <div class="actions">
        <span id="live" class="pill" data-state="connecting">connecting</span>
        <button id="shift-toggle" type="button" aria-pressed="false">Start shift</button>
        <button id="push-toggle" type="button" hidden>Notify me</button>
        <button id="logout" type="button" class="link">Sign out</button>
      </div>
    </header>
    <p id="toast" class="error" role="alert"></p>
    <section id="manager" hidden>
      <h2>Today <small id="stat-tz"></small></h2>
      <dl class="stats">
        <div><dt>Arrivals</dt><dd id="stat-arrivals">0</dd></div>
        <div><dt>Unclaimed</dt><dd id="stat-unclaimed">0</dd></div>
        <div><dt>Median to claim</dt><dd id="stat-median">-</dd></div>
      </dl>
      <ul id="team"></ul>
      <h2>Outcomes</h2>
      <p id="outcome-periods">
        <button type="button" data-days="1" aria-pressed="true">Today</button>
        <button type="button" data-days="7" aria-pressed="false">7 days</button>
        <button type="button" data-days="30" aria-pressed="false">30 days</button>
        <a id="outcome-csv" href="/api/outcomes.csv?days=1&amp;rows=visits" download>CSV (visits)</a>
        <a id="outcome-csv-associates" href="/api/outcomes.csv?days=1&amp;rows=associates" download>CSV (associates)</a>
      </p>
      <dl class="stats" id="outcomes">
        <div><dt>Arrivals</dt><dd id="out-arrivals">0</dd></div>
        <div><dt>Greeted</dt><dd id="out-claimed">0</dd></div>
        <div><dt>Nobody served</dt><dd id="out-unserved">0</dd></div>
        <div><dt>Median to claim</dt><dd id="out-median">-</dd></div>
        <div><dt>Room ready first</dt><dd id="out-rooms">0</dd></div>
      </dl>
      <table id="out-associates"><thead><tr><th>Associate</th><th>Greeted</th><th>Done</th><th>Median to claim</th></tr></thead><tbody></tbody></table>
      <h2>Gateways</h2>
      <p id="fleet-empty" class="muted">No gateway has reported.</p>
      <ul id="fleet"></ul>
      <h2>Bookings <small id="bookings-day" class="muted"></small></h2>
      <p id="bookings-status" class="muted" role="status"></p>
      <ul id="bookings"></ul>
      <div id="booking-forms">
        <form id="apt-form" class="booking-form">
          <h3 id="apt-title">Book an appointment</h3>
          <input type="hidden" id="apt-id">
          <label>Customer id <input id="apt-customer" required maxlength="64" autocomplete="off"></label>
          <label>Time <input id="apt-at" type="datetime-local" required></label>
          <label>Duration (minutes) <input id="apt-duration" type="number" min="1" max="1440" value="60" required></label>
          <label>Purpose <input id="apt-purpose" required maxlength="200" placeholder="styling session"></label>
          <label>Associate <select id="apt-associate" class="staff"><option value="">(routing decides)</option></select></label>
          <label>Room (optional) <input id="apt-room" maxlength="64"></label>
          <div class="buttons">
            <button type="submit" id="apt-submit">Book appointment</button>
            <button type="button" id="apt-reset" class="secondary" hidden>Keep as it was</button>
          </div>
          <p id="apt-error" class="error" role="alert"></p>
        </form>
        <form id="res-form" class="booking-form">
          <h3 id="res-title">Reserve items</h3>
          <input type="hidden" id="res-id">
          <label>Customer id <input id="res-customer" required maxlength="64" autocomplete="off"></label>
          <label>Items, one a line: SKU:name:size:colour (size and colour optional)
            <textarea id="res-items" rows="3" required placeholder="DR-221:linen dress:38:green"></textarea></label>
          <label>From <input id="res-start" type="datetime-local" required></label>
          <label>Until <input id="res-end" type="datetime-local" required></label>
          <label>Associate <select id="res-associate" class="staff"><option value="">(routing decides)</option></select></label>
          <div class="buttons">
            <button type="submit" id="res-submit">Reserve</button>
            <button type="button" id="res-reset" class="secondary" hidden>Keep as it was</button>
          </div>
          <p id="res-error" class="error" role="alert"></p>
        </form>
      </div>
    </section>
    <h2>Fitting rooms <small id="rooms-today" class="muted"></small></h2>
    <p id="rooms-empty" class="muted">No fitting rooms set up for this store.</p>
    <ul id="rooms"></ul>
    <h2>Alerts</h2>
    <p id="empty" class="muted">No alerts yet.</p>
    <ol id="feed"></ol>
  </section>
</main>
</body>
</html>
"""

CONSOLE_CSS = """
:root { --accent: #0b6e4f; --warn: #b3261e; --muted: #6b6b6b; --card: #fff; --bg: #f3f3f1; }
@media (prefers-color-scheme: dark) {
  :root { --card: #1e1e1e; --bg: #121212; --muted: #a0a0a0; }
  body { color: #eee; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.4 system-ui, sans-serif; background: var(--bg); }
main { max-width: 640px; margin: 0 auto; padding: 12px; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.1rem; margin: 16px 0 8px; }
label { display: block; margin: 10px 0; }
input { display: block; width: 100%; padding: 10px; font-size: 1rem; margin-top: 4px; }
button { font-size: 1rem; padding: 10px 14px; border-radius: 8px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; min-height: 44px; cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); }
button.link { background: none; border: none; color: var(--accent); text-decoration: underline; }
button:disabled { opacity: .5; }
header { display: flex; flex-wrap: wrap; gap: 8px; justify-content: space-between; align-items: center; }
.actions { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.muted { color: var(--muted); }
#fleet li.flagged { color: var(--warn); }
.error { color: var(--warn); min-height: 1.2em; }
.pill { font-size: .8rem; padding: 2px 8px; border-radius: 999px; background: #ddd; color: #333; }
.pill[data-state="live"] { background: #cde8dc; color: #0b4d38; }
#feed { list-style: none; padding: 0; margin: 0; }
.card { background: var(--card); border-radius: 12px; padding: 12px; margin: 10px 0;
  box-shadow: 0 1px 3px rgba(0,0,0,.15); border-left: 6px solid var(--accent); }
.card[data-state="claimed"] { border-left-color: #c98a00; }
.card[data-state="done"], .card[data-state="expired"], .card[data-state="withdrawn"] { opacity: .65; border-left-color: #999; }
.card h3 { margin: 0 0 4px; font-size: 1.1rem; }
.card .meta { font-size: .85rem; color: var(--muted); }
.card .who { margin: 6px 0; font-weight: 600; }
.card .forme { color: var(--accent); font-size: .85rem; font-weight: 600; }
.card .customer { display: flex; gap: 12px; align-items: center; margin: 8px 0; }
.avatar { width: 48px; height: 48px; border-radius: 50%; background: var(--accent); color: #fff;
  display: flex; align-items: center; justify-content: center; font-weight: 700; flex: none; }
.card dl { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; }
.card dt { color: var(--muted); } .card dd { margin: 0; }
.card ul { margin: 0; padding-left: 18px; }
.card .buttons { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 8px; }
.card .buttons button { flex: 1 1 30%; }
.stats { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; margin: 0; }
.stats div { background: var(--card); border-radius: 8px; padding: 8px; text-align: center; }
.stats dt { font-size: .8rem; color: var(--muted); } .stats dd { margin: 0; font-size: 1.4rem; }
#team { list-style: none; padding: 0; font-size: .9rem; }
#rooms { list-style: none; padding: 0; margin: 0; }
.room { background: var(--card); border-radius: 8px; padding: 8px 12px; margin: 6px 0;
  border-left: 6px solid #999; }
.room[data-state="held"], .room[data-state="preparing"] { border-left-color: #c98a00; }
.room[data-state="ready"] { border-left-color: var(--accent); }
.room[data-state="in_use"] { border-left-color: #1f4e79; }
.room .buttons { display: flex; gap: 6px; flex-wrap: wrap; margin-top: 6px; align-items: center; }
.room select { font-size: 1rem; padding: 8px; min-height: 44px; flex: 1 1 40%; }
.card .room-mark { margin: 6px 0; font-weight: 600; color: #c98a00; }
#outcome-periods button[aria-pressed="false"] { background: transparent; color: var(--accent);
  border: 1px solid var(--accent); }
#out-associates { width: 100%; border-collapse: collapse; }
#out-associates th, #out-associates td { text-align: left; padding: 4px 6px; }
.card .room-mark[data-ready="yes"] { color: var(--accent); }
select, textarea { display: block; width: 100%; padding: 10px; font-size: 1rem; margin-top: 4px; font-family: inherit; }
#bookings { list-style: none; padding: 0; margin: 0; }
.booking { background: var(--card); border-radius: 8px; padding: 8px 12px; margin: 6px 0;
  border-left: 6px solid #1f4e79; }
.booking[data-type="reservation"] { border-left-color: #c98a00; }
.booking .buttons { display: flex; gap: 6px; margin-top: 6px; }
.booking-form { background: var(--card); border-radius: 8px; padding: 8px 12px; margin: 10px 0; }
.booking-form h3 { margin: 4px 0; font-size: 1rem; }
.booking-form .buttons { display: flex; gap: 8px; flex-wrap: wrap; }
"""

CONSOLE_JS = r"""'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { me: null, csrf: '', alerts: new Map(), source: null, team: new Map(), rooms: new Map() };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: 'same-origin' };
    if (method !== 'GET') init.headers['X-CSRF-Token'] = state.csrf;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    if (!res.ok) {
      const err = new Error(data.error || res.statusText);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function toast(message) {
    $('toast').textContent = message || '';
  }

  // --- sign-in -------------------------------------------------------------------
  function showLogin() {
    if (state.source) state.source.close();
    state.source = null;
    $('console').hidden = true;
    $('login').hidden = false;
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    try {
      const data = await api('POST', '/api/session', {
        store: $('login-store').value.trim(),
        associate: $('login-associate').value.trim(),
        password: $('login-password').value,
      });
      $('login-password').value = '';
      start(data);
    } catch (e) {
      $('login-error').textContent = e.message;
    }
  });

  $('logout').addEventListener('click', async () => {
    try { await api('DELETE', '/api/session'); } catch (e) { /* signed out anyway */ }
    state.alerts.clear();
    renderFeed();
    showLogin();
  });

  // --- shift ---------------------------------------------------------------------
  function renderShift() {
    const on = state.me && state.me.on_shift;
    const button = $('shift-toggle');
    button.textContent = on ? 'End shift' : 'Start shift';
    button.setAttribute('aria-pressed', on ? 'true' : 'false');
    button.className = on ? 'secondary' : '';
  }

  $('shift-toggle').addEventListener('click', async () => {
    try {
      const data = await api('POST', '/api/shifts/me', { on_shift: !state.me.on_shift });
      state.me = data.associate;
      renderShift();
    } catch (e) { toast(e.message); }
  });

  // --- the feed ------------------------------------------------------------------
  function initials(name) {
    return String(name).split(/\s+/).filter(Boolean).slice(0, 2)
      .map((p) => p[0].toUpperCase()).join('');
  }

  function fieldValue(value) {
    if (Array.isArray(value)) return el('ul', {}, ...value.map((v) => el('li', {}, fieldText(v))));
    return fieldText(value);
  }

  function fieldText(value) {
    if (value && typeof value === 'object') {
      return Object.entries(value).map(([k, v]) => `${k} ${fieldText(v)}`).join(', ');
    }
    return String(value);
  }

  function clock(iso) {
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? String(iso)
      : at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  // A booking reads as an associate says it: "11:10 · fitting, room 2 (60 min)".
  const BOOKINGS = {
    appointment: (a) => [a.at ? clock(a.at) : null, a.note, a.room ? `room ${a.room}` : null]
      .filter(Boolean).join(' · ') + (a.duration_min ? ` (${a.duration_min} min)` : ''),
    reservation: (r) => `${(r.items || []).join(', ')}` +
      (r.start && r.end ? ` · held ${clock(r.start)}–${clock(r.end)}` : ''),
  };

  function customerCard(fields) {
    const name = fields.name || fields.first_name || '';
    const short = fields.initials || (name ? initials(name) : '?');
    const rows = [];
    for (const [key, value] of Object.entries(fields)) {
      if (key === 'name' || key === 'initials') continue;
      const shown = BOOKINGS[key] && value && typeof value === 'object' && !Array.isArray(value)
        ? BOOKINGS[key](value) : fieldValue(value);
      rows.push(el('dt', {}, key.replace(/_/g, ' ')), el('dd', { 'data-field': key }, shown));
    }
    return el('div', { class: 'customer' },
      el('div', { class: 'avatar', 'data-field': 'initials' }, short),
      el('div', {},
        name ? el('div', { class: 'name', 'data-field': 'name' }, name) : null,
        rows.length ? el('dl', {}, ...rows) : null));
  }

  function who(alert) {
    const mine = state.me && alert.claimed_by === state.me.associate_id;
    const by = mine ? 'you' : (alert.claimed_by_name || alert.claimed_by);
    switch (alert.state) {
      case 'claimed': return `Claimed by ${by}`;
      case 'done': return `Done by ${by}`;
      case 'expired': return 'Expired: nobody claimed it';
      case 'withdrawn': return 'Withdrawn: the customer no longer wants arrival alerts';
      default: return 'Waiting for someone to claim';
    }
  }

  function button(label, action, alert, cls) {
    const b = el('button', { type: 'button', class: cls || '', 'data-action': action }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const data = await api('POST', `/api/alerts/${alert.alert_id}/${action}`);
        upsert(data.alert);
        toast('');
      } catch (e) {
        toast(e.message);
        b.disabled = false;
      }
    });
    return b;
  }

  function card(alert) {
    const me = state.me ? state.me.associate_id : '';
    const mine = alert.claimed_by === me;
    const time = new Date(alert.delivered_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const buttons = [];
    if (alert.state === 'delivered') {
      buttons.push(button('Claim', 'claim', alert), button('Not me', 'decline', alert, 'secondary'));
    } else if (alert.state === 'claimed' && mine) {
      buttons.push(button('Done', 'done', alert), button('Release', 'decline', alert, 'secondary'));
    }
    const forMe = alert.state === 'delivered' && alert.notified.includes(me);
    return el('li', { class: 'card', 'data-alert-id': alert.alert_id, 'data-state': alert.state },
      el('h3', {}, alert.title),
      el('div', { class: 'meta' },
        [alert.kind.replace(/_/g, ' '), alert.zone_id, time,
          alert.priority !== 'normal' ? alert.priority : null].filter(Boolean).join(' · ')),
      forMe ? el('div', { class: 'forme' }, 'For you') : null,
      alert.room ? el('div', { class: 'room-mark', 'data-role': 'room',
        'data-ready': alert.room.ready ? 'yes' : 'no' }, alert.room.label) : null,
      alert.body ? el('p', {}, alert.body) : null,
      customerCard(alert.fields || {}),
      el('div', { class: 'who', 'data-role': 'status' }, who(alert)),
      buttons.length ? el('div', { class: 'buttons' }, ...buttons) : null);
  }

  function renderFeed() {
    const list = [...state.alerts.values()].sort((a, b) => b.delivered_at.localeCompare(a.delivered_at));
    $('feed').replaceChildren(...list.map(card));
    $('empty').hidden = list.length > 0;
    renderRooms();
    if (state.me && state.me.role === 'manager') refreshSummary();
  }

  function upsert(alert) {
    const known = state.alerts.get(alert.alert_id);
    if (known && known.rev > alert.rev) return;
    state.alerts.set(alert.alert_id, alert);
    renderFeed();
  }

  // --- fitting rooms -------------------------------------------------------------
  const ROOM_STATES = { free: 'Free', held: 'Held', preparing: 'Being prepared', ready: 'Ready', in_use: 'In use' };

  // Open alerts whose customer has no room yet (a customer has one room at a time).
  function openAlerts() {
    return [...state.alerts.values()]
      .filter((a) => (a.state === 'delivered' || a.state === 'claimed') && !a.room)
      .sort((a, b) => b.delivered_at.localeCompare(a.delivered_at));
  }

  function alertLabel(alert) {
    const f = alert.fields || {};
    return f.name || f.first_name || alert.title;
  }

  function roomButton(label, action, room, body, cls) {
    const b = el('button', { type: 'button', class: cls || '', 'data-action': action }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const data = await api('POST', `/api/rooms/${encodeURIComponent(room.room_id)}/${action}`,
          body ? body() : undefined);
        upsertRoom(data.room);
        toast('');
      } catch (e) {
        toast(e.message);
        b.disabled = false;
        if (e.status === 409) loadRooms();  // show the room as it really is now
      }
    });
    return b;
  }

  function roomRow(room) {
    const me = state.me ? state.me.associate_id : '';
    const mine = room.held_by === me;
    const manager = state.me && state.me.role === 'manager';
    const forAlert = room.alert_id ? state.alerts.get(room.alert_id) : null;
    const parts = [ROOM_STATES[room.state] || room.state];
    if (room.held_by) parts.push(mine ? 'by you' : `by ${room.held_by_name || room.held_by}`);
    if (forAlert) parts.push(`for ${alertLabel(forAlert)}`);
    if (room.booking_id) parts.push(`booking ${room.booking_id}`);
    const controls = [];
    if (room.state === 'free') {
      const open = openAlerts();
      if (open.length) {
        const select = el('select', { 'data-role': 'hold-for', 'aria-label': `customer for ${room.name}` },
          ...open.map((a) => el('option', { value: a.alert_id }, alertLabel(a))));
        controls.push(select, roomButton('Hold', 'hold', room, () => ({ alert_id: select.value })));
      }
      controls.push(roomButton('Walk-in', 'use', room, null, 'secondary'));
    } else if (mine || manager) {
      if (room.state === 'held') controls.push(roomButton('Preparing', 'prepare', room, null, 'secondary'));
      if (room.state === 'held' || room.state === 'preparing') controls.push(roomButton('Ready', 'ready', room));
      if (room.state === 'in_use') controls.push(roomButton('Done', 'done', room));
      else controls.push(roomButton('In use', 'use', room, null, 'secondary'),
        roomButton('Release', 'release', room, null, 'secondary'));
    }
    return el('li', { class: 'room', 'data-room-id': room.room_id, 'data-state': room.state },
      el('strong', {}, room.name), ' ',
      el('span', { 'data-role': 'room-status' }, parts.join(' · ')),
      controls.length ? el('div', { class: 'buttons' }, ...controls) : null);
  }

  function renderRooms() {
    // Keep what someone picked in a "hold for" list across re-renders.
    const picked = new Map([...document.querySelectorAll('#rooms [data-room-id]')].map((li) => {
      const select = li.querySelector('select');
      return [li.dataset.roomId, select ? select.value : null];
    }));
    const rows = [...state.rooms.values()].map(roomRow);
    for (const row of rows) {
      const select = row.querySelector('select');
      const value = picked.get(row.dataset.roomId);
      if (select && value && [...select.options].some((o) => o.value === value)) select.value = value;
    }
    $('rooms').replaceChildren(...rows);
    $('rooms-empty').hidden = rows.length > 0;
  }

  function setRooms(rooms) {
    state.rooms = new Map(rooms.map((r) => [r.room_id, r]));
    renderRooms();
  }

  function upsertRoom(room) {
    const known = state.rooms.get(room.room_id);
    if (known && known.rev > room.rev) return;
    state.rooms.set(room.room_id, room);
    renderRooms();
    clearTimeout(countsTimer);
    countsTimer = setTimeout(loadRooms, 300);  // today's counts moved too
  }

  let countsTimer = null;
  async function loadRooms() {
    try {
      const data = await api('GET', '/api/rooms');
      // What the feed brought meanwhile may be newer than this reply: keep the higher rev.
      setRooms(data.rooms.map((r) => {
        const known = state.rooms.get(r.room_id);
        return known && known.rev > r.rev ? known : r;
      }));
      const t = data.today;
      $('rooms-today').textContent = data.rooms.length
        ? `today: held ${t.held} · ready ${t.ready} · used ${t.used}` : '';
    } catch (e) { toast(e.message); }
  }

  // --- manager view --------------------------------------------------------------
  let summaryTimer = null;
  function refreshSummary() {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(async () => {
      try {
        const data = await api('GET', '/api/summary');
        const s = data.summary;
        $('stat-arrivals').textContent = s.arrivals_today;
        $('stat-tz').textContent = `(${s.timezone})`;
        $('stat-unclaimed').textContent = s.unclaimed;
        $('stat-median').textContent = s.median_time_to_claim_s === null ? '-' : `${Math.round(s.median_time_to_claim_s)} s`;
      } catch (e) { toast(e.message); }
      refreshOutcomes();
    }, 200);
  }

  let outcomeDays = 1;
  async function refreshOutcomes() {
    try {
      const data = await api('GET', `/api/outcomes?days=${outcomeDays}`);
      const o = data.outcomes;
      const t = o.totals;
      const secs = (v) => (v === null ? '-' : `${Math.round(v)} s`);
      $('out-arrivals').textContent = t.arrivals;
      $('out-claimed').textContent = t.claimed;
      $('out-unserved').textContent = t.unserved;
      $('out-median').textContent = secs(t.median_time_to_claim_s);
      $('out-rooms').textContent = `${t.room_ready} of ${t.room_ready + t.room_not_ready}`;
      const rows = o.associates.map((a) => el('tr', { 'data-associate': a.associate },
        el('td', {}, a.name), el('td', {}, String(a.claimed)), el('td', {}, String(a.done)),
        el('td', {}, secs(a.median_time_to_claim_s))));
      $('out-associates').querySelector('tbody').replaceChildren(...rows);
      $('outcome-csv').href = `/api/outcomes.csv?days=${outcomeDays}&rows=visits`;
      $('outcome-csv-associates').href = `/api/outcomes.csv?days=${outcomeDays}&rows=associates`;
    } catch (e) { toast(e.message); }
  }
  for (const b of document.querySelectorAll('#outcome-periods button')) {
    b.addEventListener('click', () => {
      outcomeDays = Number(b.dataset.days);
      for (const o of document.querySelectorAll('#outcome-periods button')) {
        o.setAttribute('aria-pressed', String(o === b));
      }
      refreshOutcomes();
    });
  }

  function renderTeam() {
    const rows = [...state.team.values()].sort((a, b) => a.name.localeCompare(b.name)).map((a) =>
      el('li', { 'data-associate': a.associate_id },
        `${a.on_shift ? '●' : '○'} ${a.name} (${a.role}${a.zones.length ? ', ' + a.zones.join(', ') : ''})`));
    $('team').replaceChildren(...rows);
  }

  let fleetTimer = null;
  async function loadFleet() {
    clearTimeout(fleetTimer);
    try {
      const data = await api('GET', '/api/gateways');
      const rows = data.gateways.map((g) => {
        const beacons = g.beacons.map((b) =>
          `${b.beacon_id || b.address} ${b.battery_mv === null ? '?' : b.battery_mv} mV`).join(', ');
        const text = `${g.gateway_id}: ${g.state} since ${new Date(g.since).toLocaleTimeString()}`
          + (beacons ? ` · ${beacons}` : '') + (g.flags.length ? ` · ${g.flags.join('; ')}` : ' · ok');
        return el('li', { 'data-gateway': g.gateway_id, 'data-state': g.state,
          class: g.flags.length ? 'flagged' : '' }, text);
      });
      $('fleet').replaceChildren(...rows);
      $('fleet-empty').hidden = rows.length > 0;
    } catch (e) { toast(e.message); }
    fleetTimer = setTimeout(loadFleet, 10000);
  }

  async function loadTeam() {
    const data = await api('GET', '/api/shifts');
    state.team = new Map(data.associates.map((a) => [a.associate_id, a]));
    renderTeam();
    renderStaffChoices();
  }

  // --- bookings (managers): through the bookings API, at this store only -----------------
  const pad = (n) => String(n).padStart(2, '0');
  // <input type="datetime-local"> holds this browser's local time, without a zone.
  function toLocalInput(iso) {
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  function fromLocalInput(value) { return new Date(value).toISOString(); }
  const staffName = (id) => (id ? (state.team.get(id) || { name: id }).name : 'routing decides');

  function renderStaffChoices() {
    for (const select of document.querySelectorAll('select.staff')) {
      const keep = select.value;
      const people = [...state.team.values()].sort((a, b) => a.name.localeCompare(b.name));
      select.replaceChildren(el('option', { value: '' }, '(routing decides)'),
        ...people.map((a) => el('option', { value: a.associate_id }, a.name)));
      select.value = keep;
    }
  }

  function itemLabel(i) {
    return [i.colour && !i.name.toLowerCase().includes(i.colour.toLowerCase()) ? i.colour : null,
      i.name, i.size].filter(Boolean).join(' ');
  }

  function bookingRow(b) {
    const text = b.type === 'appointment'
      ? `${clock(b.at)} (${b.duration_min} min) · ${b.purpose} · ${b.customer_id} · with ${staffName(b.associate_id)}`
        + (b.room ? ` · room ${b.room}` : '')
      : `${clock(b.start)}–${clock(b.end)} reserved for ${b.customer_id}: ${b.items.map(itemLabel).join(', ')}`
        + ` · ${staffName(b.associate_id)}` + (b.note ? ` · ${b.note}` : '');
    const change = el('button', { type: 'button', class: 'secondary', 'data-action': 'change' }, 'Change');
    change.addEventListener('click', () => editBooking(b));
    const cancel = el('button', { type: 'button', class: 'secondary', 'data-action': 'cancel' }, 'Cancel');
    cancel.addEventListener('click', async () => {
      if (cancel.dataset.armed !== 'yes') {  // a second tap confirms: no dialog on a phone
        cancel.dataset.armed = 'yes';
        cancel.textContent = 'Tap again to cancel it';
        return;
      }
      cancel.disabled = true;
      try {
        await api('POST', '/api/bookings/cancel', { customer_id: b.customer_id, booking_id: b.booking_id });
        await loadBookings();
      } catch (e) { toast(e.message); cancel.disabled = false; }
    });
    return el('li', { class: 'booking', 'data-booking-id': b.booking_id, 'data-type': b.type },
      el('div', {}, text), el('div', { class: 'buttons' }, change, cancel));
  }

  async function loadBookings() {
    try {
      const data = await api('GET', '/api/bookings');
      $('bookings-day').textContent = `${data.day} (${data.timezone})`;
      $('booking-forms').hidden = !data.connected;
      if (!data.connected) {
        $('bookings-status').textContent = data.reason || 'Bookings are not connected.';
        $('bookings').replaceChildren();
        return;
      }
      $('bookings-status').textContent = data.bookings.length ? '' : 'No bookings today.';
      $('bookings').replaceChildren(...data.bookings.map(bookingRow));
    } catch (e) {
      $('bookings-status').textContent = e.message;
    }
  }

  function resetForm(kind) {
    const form = $(`${kind}-form`);
    form.reset();
    $(`${kind}-id`).value = '';
    $(`${kind}-customer`).readOnly = false;
    $(`${kind}-reset`).hidden = true;
    $(`${kind}-error`).textContent = '';
    $(`${kind}-title`).textContent = kind === 'apt' ? 'Book an appointment' : 'Reserve items';
    $(`${kind}-submit`).textContent = kind === 'apt' ? 'Book appointment' : 'Reserve';
  }

  function editBooking(b) {
    const kind = b.type === 'appointment' ? 'apt' : 'res';
    resetForm(kind);
    $(`${kind}-id`).value = b.booking_id;
    $(`${kind}-customer`).value = b.customer_id;
    $(`${kind}-customer`).readOnly = true;  // a booking stays the customer's
    $(`${kind}-associate`).value = b.associate_id || '';
    if (kind === 'apt') {
      $('apt-at').value = toLocalInput(b.at);
      $('apt-duration').value = b.duration_min;
      $('apt-purpose').value = b.purpose;
      $('apt-room').value = b.room || '';
    } else {
      $('res-items').value = b.items.map((i) => [i.sku, i.name, i.size || '', i.colour || '']
        .join(':').replace(/:+$/, '')).join('\n');
      $('res-start').value = toLocalInput(b.start);
      $('res-end').value = toLocalInput(b.end);
    }
    $(`${kind}-title`).textContent = `Change ${b.booking_id}`;
    $(`${kind}-submit`).textContent = 'Save change';
    $(`${kind}-reset`).hidden = false;
    $(`${kind}-form`).scrollIntoView({ block: 'nearest' });
  }

  function parseItems(text) {
    return text.split('\n').map((l) => l.trim()).filter(Boolean).map((line, n) => {
      const parts = line.split(':').map((p) => p.trim());
      if (parts.length < 2 || parts.length > 4 || !parts[0] || !parts[1]) {
        throw new Error(`items, line ${n + 1}: ${JSON.stringify(line)} is not SKU:name[:size[:colour]]`);
      }
      const item = { sku: parts[0], name: parts[1] };
      if (parts[2]) item.size = parts[2];
      if (parts[3]) item.colour = parts[3];
      return item;
    });
  }

  async function submitBooking(kind, build) {
    $(`${kind}-error`).textContent = '';
    let body;
    try { body = build(); } catch (e) { $(`${kind}-error`).textContent = e.message; return; }
    const id = $(`${kind}-id`).value;
    if (id) body.booking_id = id;
    const associate = $(`${kind}-associate`).value;
    if (associate) body.associate_id = associate;
    $(`${kind}-submit`).disabled = true;
    try {
      await api('POST', '/api/bookings', body);
      resetForm(kind);
      await loadBookings();
    } catch (e) {
      $(`${kind}-error`).textContent = e.message;
    } finally { $(`${kind}-submit`).disabled = false; }
  }

  $('apt-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitBooking('apt', () => {
      const body = {
        type: 'appointment', customer_id: $('apt-customer').value.trim(),
        at: fromLocalInput($('apt-at').value), duration_min: Number($('apt-duration').value),
        purpose: $('apt-purpose').value.trim(),
      };
      if ($('apt-room').value.trim()) body.room = $('apt-room').value.trim();
      return body;
    });
  });
  $('res-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitBooking('res', () => ({
      type: 'reservation', customer_id: $('res-customer').value.trim(),
      items: parseItems($('res-items').value),
      start: fromLocalInput($('res-start').value), end: fromLocalInput($('res-end').value),
    }));
  });
  $('apt-reset').addEventListener('click', () => resetForm('apt'));
  $('res-reset').addEventListener('click', () => resetForm('res'));

  // --- live updates --------------------------------------------------------------
  function connect() {
    const source = new EventSource('/api/events');
    state.source = source;
    source.addEventListener('open', () => { $('live').dataset.state = 'live'; $('live').textContent = 'live'; });
    source.addEventListener('error', () => {
      $('live').dataset.state = 'connecting';
      $('live').textContent = 'reconnecting';
      // A closed stream is often an expired session: find out, and show sign-in if so.
      api('GET', '/api/me').catch((e) => { if (e.status === 401) showLogin(); });
    });
    source.addEventListener('snapshot', (ev) => {
      const data = JSON.parse(ev.data);
      state.alerts = new Map(data.alerts.map((a) => [a.alert_id, a]));
      state.rooms = new Map((data.rooms || []).map((r) => [r.room_id, r]));
      $('live').dataset.state = 'live';
      $('live').textContent = 'live';
      renderFeed();
    });
    source.addEventListener('alert', (ev) => upsert(JSON.parse(ev.data)));
    source.addEventListener('room', (ev) => upsertRoom(JSON.parse(ev.data)));
    source.addEventListener('rooms', (ev) => setRooms(JSON.parse(ev.data).rooms));
    source.addEventListener('shift', (ev) => {
      const a = JSON.parse(ev.data);
      state.team.set(a.associate_id, a);
      if (state.me && a.associate_id === state.me.associate_id) { state.me = a; renderShift(); }
      renderTeam();
    });
    source.addEventListener('signed-out', () => showLogin());
    source.addEventListener('notify', () => ring());
  }

  // --- sound and vibration when an alert is routed to me -------------------------------
  let audio = null;
  function ring() {
    if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.4);
    } catch (e) { /* no audio before the first tap: vibration still works */ }
  }

  // --- Web Push (the console installed as a PWA) --------------------------------------
  function b64ToBytes(value) {
    const pad = '='.repeat((4 - (value.length % 4)) % 4);
    const raw = atob((value + pad).replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  async function subscribePush() {
    const registration = await navigator.serviceWorker.register('/sw.js');
    const key = (await api('GET', '/api/push/key')).public_key;
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: b64ToBytes(key),
    });
    await api('POST', '/api/channels/push', subscription.toJSON());
    $('push-toggle').textContent = 'Notifications on';
    $('push-toggle').disabled = true;
  }

  if ('serviceWorker' in navigator && 'PushManager' in window) {
    $('push-toggle').hidden = false;
    $('push-toggle').addEventListener('click', () => {
      Notification.requestPermission().then((p) => {
        if (p !== 'granted') { toast('notifications are blocked in this browser'); return; }
        return subscribePush();
      }).catch((e) => toast(e.message));
    });
  }

  function start(data) {
    state.me = data.associate;
    state.csrf = data.csrf;
    $('me-name').textContent = state.me.name;
    $('me-store').textContent = `${state.me.store_id} · ${state.me.role}`;
    $('login').hidden = true;
    $('console').hidden = false;
    $('manager').hidden = state.me.role !== 'manager';
    renderShift();
    loadRooms();
    if (state.me.role === 'manager') {
      loadTeam().catch((e) => toast(e.message));
      loadFleet();
      loadBookings();
    }
    connect();
  }

  api('GET', '/api/me').then(start).catch(showLogin);
})();
"""

MANIFEST = """{
  "name": "Proxima console",
  "short_name": "Proxima",
  "start_url": "/",
  "scope": "/",
  "display": "standalone",
  "background_color": "#ffffff",
  "theme_color": "#1f4e79",
  "icons": [{"src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml"}]
}
"""

# Shows a push as a notification and opens (or focuses) the console when tapped. The
# payload is decrypted by the browser; it carries only the alert's title and body.
SERVICE_WORKER = """'use strict';
self.addEventListener('push', (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  event.waitUntil(self.registration.showNotification(data.title || 'Proxima alert', {
    body: data.body || '',
    tag: data.alert_id || 'proxima',
    renotify: true,
    requireInteraction: data.priority === 'high' || data.priority === 'urgent',
    vibrate: [200, 100, 200],
    data: { url: data.url || '/' },
  }));
});
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || '/';
  event.waitUntil(self.clients.matchAll({ type: 'window' }).then((windows) => {
    for (const w of windows) { if ('focus' in w) return w.focus(); }
    return self.clients.openWindow(url);
  }));
});
"""

ICON_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<rect width="64" height="64" rx="12" fill="#1f4e79"/>
<circle cx="32" cy="32" r="10" fill="#fff"/>
<circle cx="32" cy="32" r="20" fill="none" stroke="#fff" stroke-width="4" opacity=".6"/>
</svg>
"""
