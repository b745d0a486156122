/*
 * app.js: the custos audit-log page (served by custos-gateway at GET /).
 *
 * Plain JavaScript, no framework, no dependency: the page is small.  Rules
 * it keeps (docs/viewer.md):
 *  - every value from the log is written with textContent (or as a form
 *    value), never as HTML: the log holds attacker-controlled strings;
 *  - the token lives in sessionStorage and goes out only in the
 *    Authorization header of fetch() calls to this origin, never in a URL;
 *  - nothing outside this origin is ever loaded (the CSP forbids it too);
 *  - exports are downloads by navigation to a single-use ticket URL
 *    (POST /v1/exports), so the browser streams them to disk and the page
 *    never holds their rows.
 */
'use strict';

(function () {
  const TOKEN_KEY = 'custos.token';
  const $ = (id) => document.getElementById(id);
  const FILTERS = ['tenant', 'from', 'to', 'category', 'action', 'resource_type', 'resource',
    'outcome', 'target_level', 'actor', 'subject', 'access'];
  const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short'
  });

  const state = {
    access: null,         // GET /v1/access-info
    filters: {},          // the applied filters (strings, API names)
    limit: 100,
    order: 'desc',
    cursors: [null],      // cursors[i]: the cursor that fetches page i
    page: 0,
    nextCursor: null,
    events: [],
    digest: null,
    firstScreenPending: false,
    firstScreen: Promise.resolve(),   // settles when the first page is on the screen
    onFirstScreen: null,
    opener: null          // the button that opened the detail dialog
  };

  // ---------------------------------------------------------------- helpers

  /* An element with text children only: strings become text nodes. */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || ('HTTP ' + status));
      this.status = status;
      this.problem = problem || {};
    }
  }

  /* One call of the API with the token; JSON in, JSON (or null) out. */
  async function api(method, path, body) {
    const headers = { 'Accept': 'application/json', 'Authorization': 'Bearer ' + token() };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 204) return null;
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!r.ok) {
      const err = new ApiError(r.status, data);
      if (r.status === 401) signOut('The server refused the token (wrong, expired or revoked). Sign in again.');
      throw err;
    }
    return data;
  }

  function problemText(err) {
    if (!(err instanceof ApiError)) return String(err && err.message || err);
    let t = err.message;
    if (err.problem.hint) t += ' ' + err.problem.hint;
    if (err.status === 429) t = 'Too many requests for this token; wait a moment and try again.';
    return t;
  }

  function showMessage(text, kind) {
    const m = $('message');
    m.textContent = text || '';
    m.className = 'message' + (kind ? ' ' + kind : '');
    m.hidden = !text;
  }

  function announce(text) { $('status').textContent = text; }

  function fmtDate(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d) ? iso : dateFormat.format(d);
  }

  /* a datetime-local value (the viewer's time) as RFC 3339 UTC */
  function localToIso(v) {
    if (!v) return '';
    const d = new Date(v);
    return isNaN(d) ? v : d.toISOString();
  }

  function isoToLocal(iso) {
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' +
      p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function hiddenText(ev) {
    return ev.personal_data && ev.personal_data !== 'clear' ? ev.personal_data : '';
  }

  /* a value of a personal field, or a marker saying why there is none */
  function personal(ev, value) {
    if (value !== null && value !== undefined && value !== '') return document.createTextNode(String(value));
    const why = hiddenText(ev);
    return why ? el('span', { class: 'muted', text: why }) : document.createTextNode('');
  }

  function show(value) {
    if (value === null || value === undefined) return '';
    return typeof value === 'string' ? value : JSON.stringify(value);
  }

  // ---------------------------------------------------------------- sign in

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.access = null;
    $('app').classList.add('standby');
    $('signin-button').disabled = false;
    $('signin-button').textContent = 'Sign in';
    $('who').hidden = true;
    $('signin').hidden = false;
    $('event-table').tBodies[0].replaceChildren();
    $('grants').tBodies[0].replaceChildren();
    if ($('detail').open) $('detail').close();
    showMessage(message || '', message ? 'error' : '');
    $('token').value = '';
    $('token').focus();
  }

  /*
   * Signing in: the form stays until the first page of events is there,
   * then one frame swaps it for the app (laid out while the user typed).
   */
  async function start(fromSignIn) {
    state.firstScreenPending = fromSignIn;
    $('signin-button').disabled = true;
    $('signin-button').textContent = 'Signing in…';
    // the first page does not wait for anything else
    state.firstScreen = new Promise((resolve) => { state.onFirstScreen = resolve; });
    const page = loadEvents().finally(() => state.onFirstScreen());
    const who = loadAccess();
    await Promise.allSettled([page, who]);
    if (token()) showApp();
  }

  function showApp() {
    if (!$('signin').hidden) {
      $('signin').hidden = true;
      $('app').classList.remove('standby');
    }
    $('signin-button').disabled = false;
    $('signin-button').textContent = 'Sign in';
  }

  async function loadAccess() {
    try {
      const a = await api('GET', '/v1/access-info');
      // the rest of the page waits until the events are on the screen
      await state.firstScreen;
      state.access = a;
      $('who-text').textContent = (a.role || a.kind || 'token') + ' of ' + (a.tenant || '?') +
        ' · ' + (a.principal || '') + ' · ' + (a.token_kind || '') + ' token';
      $('who').hidden = false;
      const tenants = a.audit_tenants || [];
      $('tenant-list').replaceChildren(...tenants.map((t) => el('option', { value: t })));
      const sel = $('chain-tenant');
      sel.replaceChildren(...tenants.map((t) => el('option', { value: t, text: t })));
      if (tenants.includes(a.tenant)) sel.value = a.tenant;
      loadChain();
      if (a.role === 'owner' && a.token_kind === 'personal') {
        $('owner').hidden = false;
        $('owner-tenant').textContent = a.tenant;
        loadOwner();
      } else {
        $('owner').hidden = true;
      }
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    }
  }

  // ---------------------------------------------------------------- events

  function eventsQuery(cursor) {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (state.filters[k]) q.set(k, state.filters[k]);
    q.set('limit', String(state.limit));
    q.set('order', state.order);
    if (cursor) q.set('cursor', cursor);
    return q;
  }

  async function loadEvents() {
    const cursor = state.cursors[state.page];
    $('event-table').setAttribute('aria-busy', 'true');
    try {
      const data = await api('GET', '/v1/events?' + eventsQuery(cursor).toString());
      state.events = data.events || [];
      state.nextCursor = data.next_cursor;
      await renderEvents();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    } finally {
      $('event-table').removeAttribute('aria-busy');
    }
  }

  function resourceText(ev) {
    const name = ev.resource_name || ev.resource_id || '';
    return [ev.resource_type || '', name].filter(Boolean).join(' · ');
  }

  function eventRow(ev) {
    const when = el('time', { datetime: ev.occurred_at, text: fmtDate(ev.occurred_at) });
    const initiator = ev.actor_name || ev.actor;
    const button = el('button', {
      type: 'button', class: 'small', 'data-id': ev.id,
      'aria-label': 'Details of event ' + ev.id, text: 'Details'
    });
    button.addEventListener('click', () => openDetail(ev.id, button));
    // one child per cell, so that the phone layout (label | value) holds
    const td = (label, cls, ...c) => el('td', { 'data-label': label, class: cls }, el('span', null, ...c));
    return el('tr', { 'data-id': ev.id },
      td('Date', null, when),
      td('Category', null, show(ev.category)),
      td('Action', null, el('strong', null, show(ev.action))),
      td('Resource', null, resourceText(ev)),
      td('Description', 'desc', personal(ev, ev.description)),
      td('Initiator', null, personal(ev, initiator),
        ev.actor_type && ev.actor_type !== 'user' ? el('span', { class: 'muted', text: ' (' + ev.actor_type + ')' }) : null),
      td('Outcome', null, el('span', { class: 'outcome ' + (ev.outcome || ''), text: show(ev.outcome) })),
      el('td', { class: 'details' }, button));
  }

  /* fn after the next paint */
  function afterPaint(fn) {
    requestAnimationFrame(() => setTimeout(fn, 0));
  }

  /*
   * The rows that fill a screen go in first; the rest of the page follows
   * right after that screen is painted, so the first screen does not wait
   * for the layout of rows nobody sees yet.  Resolves when all are in.
   */
  const FIRST_ROWS = 20;
  let renderGeneration = 0;

  function renderEvents() {
    const generation = ++renderGeneration;
    const events = state.events;
    const body = $('event-table').tBodies[0];
    showApp();
    body.replaceChildren(...events.slice(0, FIRST_ROWS).map(eventRow));
    $('events-empty').hidden = events.length > 0;
    const n = events.length;
    $('events-summary').textContent = n + (n === 1 ? ' event' : ' events') + ' on page ' + (state.page + 1) +
      ' · ' + (state.order === 'desc' ? 'newest first' : 'oldest first');
    $('page-info').textContent = 'Page ' + (state.page + 1);
    $('page-prev').disabled = state.page === 0;
    $('page-next').disabled = !state.nextCursor;
    const measure = state.firstScreenPending;
    state.firstScreenPending = false;
    if (measure) performance.mark('custos:rendered');
    return new Promise((resolve) => {
      afterPaint(() => {
        if (measure) performance.mark('custos:first-screen');
        if (state.onFirstScreen) state.onFirstScreen();
        if (generation === renderGeneration && events.length > FIRST_ROWS) {
          body.append(...events.slice(FIRST_ROWS).map(eventRow));
        }
        if (measure) afterPaint(() => performance.mark('custos:all-rows'));
        resolve();
      });
    });
  }

  function readFilters() {
    const f = {};
    for (const k of FILTERS) {
      const input = $('f-' + k);
      let v = input.value.trim();
      if ((k === 'from' || k === 'to') && v) v = localToIso(v);
      if (v) f[k] = v;
    }
    return f;
  }

  function applyFilters() {
    state.filters = readFilters();
    state.limit = Number($('f-limit').value) || 100;
    state.order = $('f-order').value;
    state.cursors = [null];
    state.page = 0;
    showMessage('');
    return loadEvents().then(() => announce($('events-summary').textContent));
  }

  function nextPage() {
    if (!state.nextCursor) return;
    state.cursors[state.page + 1] = state.nextCursor;
    state.page++;
    loadEvents().then(() => { announce($('events-summary').textContent); $('events-heading').focus(); });
  }

  function prevPage() {
    if (state.page === 0) return;
    state.page--;
    loadEvents().then(() => { announce($('events-summary').textContent); $('events-heading').focus(); });
  }

  // ---------------------------------------------------------------- detail

  const DETAIL_FIELDS = [
    ['id', 'Id'], ['tenant', 'Tenant'], ['occurred_at', 'Occurred'], ['recorded_at', 'Recorded'],
    ['category', 'Category'], ['action', 'Action'], ['outcome', 'Outcome'],
    ['resource_type', 'Resource type'], ['resource_id', 'Resource id'], ['resource_name', 'Resource name'],
    ['target_level', 'Target level'], ['target_name', 'Target name'],
    ['actor', 'Initiator id'], ['actor_name', 'Initiator name'], ['actor_type', 'Initiator type'],
    ['source_ip', 'Source IP'], ['user_agent', 'User agent'], ['subject', 'Data subject'],
    ['description', 'Description'], ['request_id', 'Request id'], ['access', 'Appended by'],
    ['seq', 'Chain position'], ['block_no', 'Block'], ['sealed', 'Sealed'], ['personal_data', 'Personal data']
  ];
  const PERSONAL = new Set(['actor_name', 'source_ip', 'user_agent', 'subject', 'description']);

  async function openDetail(id, opener) {
    let ev;
    try {
      ev = await api('GET', '/v1/events/' + encodeURIComponent(id));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
      return;
    }
    state.opener = opener;
    $('detail-heading').textContent = 'Event ' + ev.id;
    const dl = $('detail-fields');
    dl.replaceChildren();
    for (const [k, label] of DETAIL_FIELDS) {
      let v = ev[k];
      let node;
      if (k === 'occurred_at' || k === 'recorded_at') {
        node = el('time', { datetime: v, title: v }, fmtDate(v));
      } else if (PERSONAL.has(k)) {
        node = personal(ev, v);
      } else {
        node = document.createTextNode(show(v));
      }
      dl.append(el('div', null, el('dt', null, label), el('dd', { 'data-field': k }, node)));
    }
    renderChanges(ev);
    $('detail-metadata').textContent = ev.metadata == null ? (hiddenText(ev) || '–') : JSON.stringify(ev.metadata, null, 2);
    $('detail').showModal();
    $('detail-close').focus();
  }

  /* previous_state and new_state side by side, one row per key, changes marked */
  function renderChanges(ev) {
    const asObject = (s) => (s && typeof s === 'object' && !Array.isArray(s)) ? s : (s == null ? {} : { '(value)': s });
    const prev = asObject(ev.previous_state);
    const next = asObject(ev.new_state);
    const keys = Array.from(new Set([...Object.keys(prev), ...Object.keys(next)])).sort();
    const rows = keys.map((k) => {
      const a = k in prev ? JSON.stringify(prev[k]) : undefined;
      const b = k in next ? JSON.stringify(next[k]) : undefined;
      const changed = a !== b;
      const cell = (v, has) => el('td', null, has ? show(v) : el('span', { class: 'muted', text: 'absent' }));
      return el('tr', { class: changed ? 'changed' : null },
        el('th', { scope: 'row' }, k, changed ? el('span', { class: 'change-mark', text: ' changed' }) : null),
        cell(prev[k], k in prev), cell(next[k], k in next));
    });
    $('changes').tBodies[0].replaceChildren(...rows);
    const none = rows.length === 0;
    $('changes').hidden = none;
    $('changes-empty').hidden = !none;
    if (none && hiddenText(ev)) $('changes-empty').textContent = 'States are personal data: ' + hiddenText(ev) + '.';
    else $('changes-empty').textContent = 'No previous or new state.';
  }

  // ---------------------------------------------------------------- export

  /*
   * A single-use ticket for the current filters, then a plain download of
   * its URL: the browser streams the file to disk, the page holds nothing.
   */
  async function exportAs(format) {
    const button = $('export-' + format);
    button.disabled = true;
    try {
      const t = await api('POST', '/v1/exports', { format, filters: state.filters });
      const a = el('a', { href: t.href, download: '' });
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      announce('The ' + format.toUpperCase() + ' export is downloading.');
      showMessage('The ' + format.toUpperCase() + ' export of these filters is downloading.', 'info');
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- chain

  async function loadChain() {
    const tenant = $('chain-tenant').value;
    const status = $('chain-status');
    const detail = $('chain-detail');
    state.digest = null;
    $('chain-copy').disabled = true;
    $('chain-head').textContent = '–';
    if (!tenant) {
      status.textContent = 'not available';
      status.className = 'badge';
      detail.textContent = 'This token cannot audit a whole tenant\'s chain.';
      return;
    }
    status.textContent = 'checking…';
    status.className = 'badge';
    detail.textContent = '';
    const q = '?tenant=' + encodeURIComponent(tenant);
    try {
      const [v, d] = await Promise.all([api('GET', '/v1/verify' + q), api('GET', '/v1/digest' + q)]);
      if (!v.ok) {
        status.textContent = 'broken';
        status.className = 'badge bad';
        detail.textContent = (v.failure || 'failure') + (v.failed_seq != null ? ' at position ' + v.failed_seq : '') +
          (v.detail ? ': ' + v.detail : '');
      } else if (v.pending > 0) {
        status.textContent = 'pending';
        status.className = 'badge warn';
        detail.textContent = v.events_checked + ' events verified; ' + v.pending + ' not sealed yet.';
      } else {
        status.textContent = 'verified';
        status.className = 'badge good';
        detail.textContent = v.events_checked + ' events in ' + v.blocks_checked + ' blocks verified.';
      }
      state.digest = d;
      $('chain-head').textContent = d.head || '–';
      $('chain-head').title = 'block ' + d.block_no + ', ' + d.size + ' events, sealed ' + fmtDate(d.sealed_at);
      $('chain-copy').disabled = !d.head;
    } catch (e) {
      status.textContent = 'not available';
      status.className = 'badge';
      detail.textContent = e instanceof ApiError && e.status === 403 ? 'This token may not audit this chain.' : problemText(e);
    }
  }

  async function copyDigest() {
    if (!state.digest) return;
    const text = JSON.stringify(state.digest);
    try {
      await navigator.clipboard.writeText(text);
      announce('Digest copied.');
      $('chain-copy').textContent = 'Copied';
    } catch (e) {
      // no clipboard permission: select the head so that the user can copy it
      const r = document.createRange();
      r.selectNodeContents($('chain-head'));
      const s = getSelection();
      s.removeAllRanges();
      s.addRange(r);
      $('chain-copy').textContent = 'Selected: press Ctrl+C';
    }
    setTimeout(() => { $('chain-copy').textContent = 'Copy digest'; }, 2500);
  }

  // ---------------------------------------------------------------- owner

  /*
   * Privacy mode and grants as the log records them: there is no endpoint
   * that lists them, but every switch and grant is an audit event of the
   * tenant (category "privacy"), which the owner can read.
   */
  async function allEvents(filters) {
    const out = [];
    let cursor = null;
    for (let i = 0; i < 20; i++) {
      const q = new URLSearchParams(filters);
      q.set('limit', '1000');
      q.set('order', 'asc');
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', '/v1/events?' + q.toString());
      out.push(...page.events);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    return out;
  }

  async function loadOwner() {
    const tenant = state.access.tenant;
    try {
      const latest = async (action) => {
        const q = new URLSearchParams({ tenant, category: 'privacy', action, limit: '1' });
        const p = await api('GET', '/v1/events?' + q.toString());
        return p.events[0] ? p.events[0].id : 0;
      };
      const [on, off, rights] = await Promise.all([latest('PRIVACY_MODE_ON'), latest('PRIVACY_MODE_OFF'),
        allEvents({ tenant, category: 'privacy', resource_type: 'RIGHT' })]);
      setPrivacy(on > off);
      const live = new Map();
      for (const ev of rights) {
        if (ev.action === 'GRANT') live.set(ev.resource_id, { id: ev.resource_id, right: ev.resource_name, ...(ev.new_state || {}) });
        else if (ev.action === 'REVOKE') live.delete(ev.resource_id);
      }
      const now = Date.now();
      const grants = [...live.values()].filter((g) => !g.expires_at || new Date(g.expires_at).getTime() > now);
      renderGrants(grants);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    }
  }

  function setPrivacy(on) {
    $('privacy-mode').checked = on;
    $('privacy-state').textContent = on ? 'on: personal fields hidden from tenants above' : 'off';
  }

  function renderGrants(grants) {
    const rows = grants.map((g) => {
      const revoke = el('button', { type: 'button', class: 'small', 'aria-label': 'Revoke grant ' + g.id, text: 'Revoke' });
      revoke.addEventListener('click', () => revokeGrant(g.id));
      return el('tr', null, el('td', null, show(g.id)), el('td', null, show(g.principal)), el('td', null, show(g.right)),
        el('td', null, g.expires_at ? el('time', { datetime: g.expires_at }, fmtDate(g.expires_at)) : 'never'),
        el('td', null, revoke));
    });
    $('grants').tBodies[0].replaceChildren(...rows);
    $('grants').hidden = rows.length === 0;
    $('grants-empty').hidden = rows.length > 0;
  }

  async function togglePrivacy() {
    const box = $('privacy-mode');
    const want = box.checked;
    box.disabled = true;
    try {
      const r = await api('PUT', '/v1/tenants/' + encodeURIComponent(state.access.tenant) + '/privacy-mode', { enabled: want });
      setPrivacy(r.privacy_mode);
      showMessage('Privacy mode is ' + (r.privacy_mode ? 'on' : 'off') + '.', 'info');
    } catch (e) {
      setPrivacy(!want);
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    } finally {
      box.disabled = false;
      box.focus();
    }
  }

  async function addGrant(ev) {
    ev.preventDefault();
    const body = { tenant: state.access.tenant, principal: $('grant-principal').value.trim(), right: $('grant-right').value };
    const exp = $('grant-expires').value;
    if (exp) body.expires_at = localToIso(exp);
    try {
      const g = await api('POST', '/v1/grants', body);
      showMessage('Granted ' + g.right + ' to ' + g.principal + ' (grant ' + g.id + ').', 'info');
      $('grant-principal').value = '';
      await loadOwner();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    }
  }

  async function revokeGrant(id) {
    try {
      await api('DELETE', '/v1/grants/' + encodeURIComponent(id));
      showMessage('Grant ' + id + ' revoked.', 'info');
      await loadOwner();
      $('grant-principal').focus();
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) showMessage(problemText(e), 'error');
    }
  }

  // ---------------------------------------------------------------- wiring

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (!t) {
        showMessage('Enter a token.', 'error');
        $('token').focus();
        return;
      }
      performance.clearMarks();
      performance.clearResourceTimings();
      performance.mark('custos:signin');
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token').value = '';
      showMessage('');
      start(true);
    });
    $('signout').addEventListener('click', () => signOut());
    $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); applyFilters(); });
    $('filters-reset').addEventListener('click', () => { $('filters').reset(); applyFilters(); });
    $('page-next').addEventListener('click', nextPage);
    $('page-prev').addEventListener('click', prevPage);
    $('export-csv').addEventListener('click', () => exportAs('csv'));
    $('export-ndjson').addEventListener('click', () => exportAs('ndjson'));
    $('chain-tenant').addEventListener('change', loadChain);
    $('chain-check').addEventListener('click', loadChain);
    $('chain-copy').addEventListener('click', copyDigest);
    $('privacy-mode').addEventListener('change', togglePrivacy);
    $('grant-form').addEventListener('submit', addGrant);
    $('detail-close').addEventListener('click', () => $('detail').close());
    $('detail').addEventListener('close', () => { if (state.opener) state.opener.focus(); });
    // a click on a row opens it too (the Details button is the keyboard way)
    $('event-table').tBodies[0].addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr');
      if (!tr || ev.target.closest('button') || getSelection().toString()) return;
      const b = tr.querySelector('button[data-id]');
      if (b) b.click();
    });
    const tz = el('span', { class: 'help', text: 'Times are shown in ' + timeZone + '.' });
    $('events-summary').after(tz);
    $('grant-expires').value = isoToLocal(new Date(Date.now() + 7 * 86400e3).toISOString()).slice(0, 16);
    // on a phone the filters start folded: the events come first
    if (matchMedia('(max-width: 720px)').matches) $('filters-details').open = false;
    if (token()) start(false);
    else $('token').focus();
  });
})();
