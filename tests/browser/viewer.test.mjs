// tests/browser/viewer.test.mjs: the audit-log page end to end in headless
// Chromium (Debian's chromium, driven by playwright-core) against the real
// gateway and database that tools/browser_test.sh starts.
//
// Environment: GW_URL, GW_TOKENS (JSON file of tokens and principal ids),
// GW_PSQL (a psql command line as superuser), BROWSER_OUT (screenshots/ and
// downloads/ go there), CHROMIUM (the browser's path).
//
// Prints "ok - ..." / "FAILED - ..." per check, the speed of the first
// screen, and ends with "browser: N passed, M failed".
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const GW = process.env.GW_URL;
const TOKENS = JSON.parse(fs.readFileSync(process.env.GW_TOKENS, 'utf8'));
const PSQL = process.env.GW_PSQL.split(' ');
const OUT = process.env.BROWSER_OUT;
const SHOTS = path.join(OUT, 'screenshots');
const DOWNLOADS = path.join(OUT, 'downloads');
const TZ = 'Europe/Berlin';
const STATIC = path.join(path.dirname(new URL(import.meta.url).pathname), '../../gateway/static');
fs.mkdirSync(SHOTS, { recursive: true });
fs.mkdirSync(DOWNLOADS, { recursive: true });

let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log('ok - ' + name);
  } else {
    failed++;
    console.log('FAILED - ' + name + (detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 600) : ''));
  }
  return cond;
}

function psql(sqlText) {
  return execFileSync(PSQL[0], [...PSQL.slice(1), '-c', sqlText], { encoding: 'utf8' }).trim();
}

async function api(method, p, tok, body) {
  const headers = { Authorization: 'Bearer ' + tok };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(GW + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

/* How many events a token sees under filters: pages through the API. */
async function countEvents(tok, filters) {
  let n = 0;
  let cursor = null;
  for (;;) {
    const q = new URLSearchParams({ ...filters, limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const r = await api('GET', '/v1/events?' + q, tok);
    n += r.json.events.length;
    cursor = r.json.next_cursor;
    if (!cursor) return n;
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  // as root Chromium needs --no-sandbox; the rest keeps it off the (closed) network
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync']
});

const pageErrors = [];
async function newPage(opts = {}) {
  const context = await browser.newContext({
    viewport: { width: 1360, height: 900 },
    acceptDownloads: true,
    timezoneId: TZ,
    locale: 'en-GB',
    ...opts
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: GW });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  page.on('dialog', (d) => { pageErrors.push('unexpected dialog: ' + d.message()); d.dismiss(); });
  // CSP violations are reported to the page: collect them
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
  });
  return { context, page };
}

async function signIn(page, tok) {
  await page.goto(GW + '/');
  await page.waitForSelector('#token');
  await page.fill('#token', tok);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#event-table tbody tr');
}

/*
 * Signs out and in again; returns the times (ms) from the sign-in to the
 * first screen and to all rows painted (the page's performance marks), and
 * the GET /v1/events call's duration (Resource Timing: request start to
 * response end).  Waits with a PerformanceObserver, not by polling, so that
 * the test does not load the page's main thread while it measures.
 */
async function measureSignIn(page, tok) {
  await page.click('#signout');
  await page.fill('#token', tok);
  await page.evaluate(() => {
    window.__painted = new Promise((resolve) => {
      new PerformanceObserver((list, obs) => {
        if (list.getEntries().some((e) => e.name === 'custos:all-rows')) {
          obs.disconnect();
          resolve();
        }
      }).observe({ type: 'mark' });
    });
  });
  await page.click('#signin-button');
  const m = await page.evaluate(async () => {
    await window.__painted;
    const at = (name) => performance.getEntriesByName(name)[0].startTime;
    const ev = performance.getEntriesByType('resource').find((e) => e.name.includes('/v1/events?'));
    return {
      screen: at('custos:first-screen') - at('custos:signin'),
      all: at('custos:all-rows') - at('custos:signin'),
      call: ev.responseEnd - ev.startTime
    };
  });
  return { ...m, ratio: m.screen / m.call };
}

async function rowIds(page) {
  return page.$$eval('#event-table tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.id)));
}

async function applyFilters(page, values) {
  await page.click('#filters-reset');
  await page.waitForFunction(() => !document.querySelector('#event-table').hasAttribute('aria-busy'));
  for (const [k, v] of Object.entries(values)) {
    const sel = '#f-' + k;
    if (await page.$eval(sel, (e) => e.tagName) === 'SELECT') await page.selectOption(sel, v);
    else await page.fill(sel, v);
  }
  const before = await page.$eval('#events-summary', (e) => e.textContent);
  await Promise.all([
    page.waitForResponse((r) => r.url().includes('/v1/events?')),
    page.click('#filters button[type=submit]')
  ]);
  await page.waitForFunction(() => !document.querySelector('#event-table').hasAttribute('aria-busy'));
  return before;
}

async function shot(page, name, opts = {}) {
  const p = path.join(SHOTS, name);
  await page.screenshot({ path: p, ...opts });
  return p;
}

async function run(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name + ' raised', false, String(e && e.stack || e));
  }
}

// ---------------------------------------------------------------------------
await run('static', async () => {
  for (const [p, type] of [['/', 'text/html'], ['/app.js', 'text/javascript'], ['/app.css', 'text/css'],
    ['/favicon.svg', 'image/svg+xml']]) {
    const r = await fetch(GW + p);
    const body = await r.text();
    const name = p === '/' ? 'index.html' : p.slice(1);
    check('GET ' + p + ' serves gateway/static/' + name + ' built into the gateway',
      r.status === 200 && r.headers.get('content-type').startsWith(type) &&
      body === fs.readFileSync(path.join(STATIC, name), 'utf8'), r.status);
  }
  const r = await fetch(GW + '/');
  const csp = r.headers.get('content-security-policy') || '';
  check('the page has a strict CSP (self only, no inline script, no framing)',
    /default-src 'none'/.test(csp) && /script-src 'self'(;|$)/.test(csp) && /frame-ancestors 'none'/.test(csp) &&
    !/unsafe-inline|unsafe-eval|https?:/.test(csp), csp);
  check('... nosniff, no referrer, no framing, no caching',
    r.headers.get('x-content-type-options') === 'nosniff' && r.headers.get('referrer-policy') === 'no-referrer' &&
    r.headers.get('x-frame-options') === 'DENY' && r.headers.get('cache-control') === 'no-store',
    Object.fromEntries(r.headers));
  const html = fs.readFileSync(path.join(STATIC, 'index.html'), 'utf8');
  const js = fs.readFileSync(path.join(STATIC, 'app.js'), 'utf8');
  check('no inline script, no inline handler, no external URL in the page',
    !/<script(?![^>]*\bsrc=)[^>]*>/.test(html) && !/\son[a-z]+=/.test(html) &&
    !/(src|href)=["']?(https?:)?\/\//.test(html) && !/https?:\/\//.test(js) &&
    !/\/\/[a-z0-9.-]+\.[a-z]{2,}\//i.test(js.replace(/\/\/.*$/gm, '')), null);
  check('app.js never writes HTML (no innerHTML, outerHTML, insertAdjacentHTML, document.write, eval)',
    !/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/.test(js), null);
});

// ---------------------------------------------------------------------------
// Sign in (keyboard only), the first screen and its speed
// ---------------------------------------------------------------------------
const ratios = [];
await run('sign in', async () => {
  const { context, page } = await newPage();
  await page.goto(GW + '/');
  await page.waitForSelector('#token');
  check('the token field has the focus on arrival', await page.evaluate(() => document.activeElement.id) === 'token');
  check('the token field is labelled', await page.$eval('label[for=token]', (l) => l.textContent.trim()) === 'Access token');
  await shot(page, 'signin.png');
  await page.keyboard.type(TOKENS.walter);
  await page.keyboard.press('Tab');
  check('Tab goes from the token to the Sign in button',
    await page.evaluate(() => document.activeElement.id) === 'signin-button');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check('the focused button shows a visible focus ring', outline === 'solid', outline);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#event-table tbody tr').length === 100);
  check('sign-in shows the first page: 100 events', (await rowIds(page)).length === 100);
  check('the token is in sessionStorage only, never in the URL, a cookie or localStorage',
    await page.evaluate((t) => sessionStorage.getItem('custos.token') === t && !location.href.includes(t) &&
      document.cookie === '' && localStorage.length === 0, TOKENS.walter));
  const headers = await page.$$eval('#event-table thead th', (ths) => ths.map((t) => t.textContent.trim()));
  check('columns: date, category, action, resource, description, initiator, outcome',
    JSON.stringify(headers.slice(0, 7)) === JSON.stringify(['Date', 'Category', 'Action', 'Resource', 'Description', 'Initiator', 'Outcome']), headers);
  // the date in the viewer's time zone (the context runs in Europe/Berlin)
  const first = await page.$eval('#event-table tbody tr time', (t) => ({ iso: t.getAttribute('datetime'), text: t.textContent }));
  const expected = new Intl.DateTimeFormat('en-GB', {
    year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    timeZoneName: 'short', timeZone: TZ
  }).format(new Date(first.iso));
  check('dates are shown in the viewer\'s time zone (' + TZ + ')', first.text === expected && /CET|GMT\+1/.test(first.text), [first, expected]);
  await page.waitForFunction(() => document.querySelector('#chain-status').textContent !== 'checking…' &&
    document.querySelector('#chain-status').textContent !== 'not checked');
  await shot(page, 'events.png');

  // speed: sign-in to the first screen vs the GET /v1/events call behind it,
  // fifteen sign-ins each on loopback and with 20 ms of network latency
  // (DevTools' emulation: every request of the page pays it, as on a LAN).
  // The target is 2x; on loopback the call takes a few ms and one
  // browser frame (docs/viewer.md) is most of the page's own time.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  for (const latency of [0, 20]) {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency, downloadThroughput: -1, uploadThroughput: -1 });
    const runs = [];
    for (let i = 0; i < 15; i++) runs.push(await measureSignIn(page, TOKENS.walter));
    runs.sort((a, b) => a.ratio - b.ratio);
    const med = runs[7];
    const own = runs.map((r) => r.screen - r.call).sort((a, b) => a - b)[7];
    console.log('# first screen of 100 events, network latency %d ms: sign-in to first screen %s ms, ' +
      'GET /v1/events %s ms, ratio %s (median of 15: %s); the page\'s own time %s ms (median); ' +
      'all 100 rows painted at %s ms; target 2x %s',
    latency, med.screen.toFixed(1), med.call.toFixed(1), med.ratio.toFixed(2),
    runs.map((r) => r.ratio.toFixed(2)).join(' '), own.toFixed(1), med.all.toFixed(1), med.ratio <= 2 ? 'met' : 'NOT met');
    ratios.push({ latency, median: med, own_ms: own, runs });
    // Speed is measured here and reported (above, and in first-screen.json),
    // not asserted: a timed check would fail on a loaded CI machine.  What
    // is checked is that the measurement itself is sound: the first screen
    // was marked, after the events it shows had arrived.
    check('with ' + latency + ' ms latency the first screen was measured, after its GET /v1/events (median ' +
      med.screen.toFixed(1) + ' ms vs ' + med.call.toFixed(1) + ' ms)',
    runs.every((r) => Number.isFinite(r.screen) && Number.isFinite(r.call) && r.call > 0 && r.screen >= r.call), runs);
  }
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  fs.writeFileSync(path.join(OUT, 'first-screen.json'), JSON.stringify(ratios, null, 2));
  await context.close();
});

// ---------------------------------------------------------------------------
// Attacker-controlled strings stay text
// ---------------------------------------------------------------------------
await run('xss', async () => {
  const { context, page } = await newPage();
  await signIn(page, TOKENS.walter);
  await applyFilters(page, { resource: 'XSS-1' });
  const cells = await page.$$eval('#event-table tbody tr td', (tds) => tds.map((t) => t.textContent));
  check('the XSS event is listed, its strings shown as text',
    cells.includes('<img src=x onerror="window.__xss=1">') && cells.some((c) => c.includes('<script>window.__xss=2</script>')) &&
    cells.some((c) => c.includes('"><svg onload=window.__xss=3>')), cells);
  await page.click('#event-table tbody tr button');
  await page.waitForSelector('#detail[open]');
  const ch = await page.$$eval('#changes tbody tr', (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  check('... in the detail view too (a key and a value with markup)',
    ch.length === 1 && ch[0][0].startsWith('<b>k</b>') && ch[0][2] === '<img src=x onerror=window.__xss=4>', ch);
  await shot(page, 'xss-detail.png');
  const state = await page.evaluate(() => ({
    xss: window.__xss,
    markup: document.querySelectorAll('main img, main svg, main script, main b').length,
    csp: window.__csp
  }));
  check('no script ran, no element was made from the data', state.xss === undefined && state.markup === 0, state);
  check('no CSP violation', state.csp.length === 0, state.csp);
  await context.close();
});

// ---------------------------------------------------------------------------
// Filters, paging, detail (keyboard), export, chain status
// ---------------------------------------------------------------------------
await run('walter', async () => {
  const { context, page } = await newPage();
  await signIn(page, TOKENS.walter);

  // filter
  await applyFilters(page, { category: 'scheme', action: 'UPDATE', outcome: 'success' });
  const n = await countEvents(TOKENS.walter, { category: 'scheme', action: 'UPDATE', outcome: 'success' });
  const rows = await page.$$eval('#event-table tbody tr', (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  check('filters (category, action, outcome) narrow the table to what the API gives',
    rows.length === Math.min(n, 100) && n > 100 && rows.every((r) => r[1] === 'scheme' && r[2] === 'UPDATE' && r[6] === 'success'),
    { n, rows: rows.length });
  // a time window in the viewer's time: 2026-11-02 00:00 to 12:00 Berlin
  await applyFilters(page, { from: '2026-11-02T00:00', to: '2026-11-02T12:00' });
  const times = await page.$$eval('#event-table tbody time', (ts) => ts.map((t) => t.getAttribute('datetime')));
  const lo = Date.parse('2026-11-01T23:00:00Z');
  const hi = Date.parse('2026-11-02T11:00:00Z');
  const expectedWindow = await countEvents(TOKENS.walter, { from: '2026-11-01T23:00:00Z', to: '2026-11-02T11:00:00Z' });
  check('from/to are taken in the viewer\'s time zone',
    times.length === expectedWindow && times.length > 0 && times.every((t) => Date.parse(t) >= lo && Date.parse(t) < hi),
    { got: times.length, expectedWindow });

  // paging: next, next, previous; keyset, no overlap
  await applyFilters(page, {});
  const p1 = await rowIds(page);
  await Promise.all([page.waitForResponse((r) => r.url().includes('cursor=')), page.click('#page-next')]);
  await page.waitForFunction((first) => Number(document.querySelector('#event-table tbody tr').dataset.id) !== first &&
    !document.querySelector('#event-table').hasAttribute('aria-busy'), p1[0]);
  const p2 = await rowIds(page);
  check('Next page: the following 100 events, older, none repeated',
    p2.length === 100 && Math.max(...p2) < Math.min(...p1),
    { p1: [p1[0], p1[99]], p2: [p2[0], p2[99]] });
  check('... and the focus moves to the events heading', await page.evaluate(() => document.activeElement.id) === 'events-heading');
  await page.click('#page-next');
  await page.waitForFunction((first) => Number(document.querySelector('#event-table tbody tr').dataset.id) !== first &&
    !document.querySelector('#event-table').hasAttribute('aria-busy'), p2[0]);
  const p3 = await rowIds(page);
  await page.click('#page-prev');
  await page.waitForFunction((first) => Number(document.querySelector('#event-table tbody tr').dataset.id) === first &&
    !document.querySelector('#event-table').hasAttribute('aria-busy'), p2[0]);
  check('Previous page returns to the same events', JSON.stringify(await rowIds(page)) === JSON.stringify(p2) && Math.max(...p3) < Math.min(...p2));
  check('the page number is shown', (await page.textContent('#page-info')) === 'Page 2');

  // detail with the keyboard: Tab to a Details button, Enter, Escape
  await applyFilters(page, { resource: 'r-4' });
  const btn = page.locator('#event-table tbody tr button').first();
  await btn.focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#detail[open]');
  check('Enter on Details opens the detail dialog, focus on Close',
    await page.evaluate(() => document.activeElement.id) === 'detail-close');
  const changes = await page.$$eval('#changes tbody tr', (trs) => trs.map((tr) => ({
    key: tr.querySelector('th').firstChild.textContent, changed: tr.classList.contains('changed'),
    prev: tr.children[1].textContent, next: tr.children[2].textContent
  })));
  const byKey = Object.fromEntries(changes.map((c) => [c.key, c]));
  check('previous and new state side by side, changed keys highlighted',
    byKey.mode && byKey.mode.changed && byKey.mode.prev === 'day' && byKey.mode.next === 'night' &&
    byKey.contrast && !byKey.contrast.changed && byKey.contrast.prev === '50' && byKey.contrast.next === '50', changes);
  const fields = await page.$$eval('#detail-fields dd', (dds) => Object.fromEntries(dds.map((d) => [d.dataset.field, d.textContent])));
  check('the detail shows the personal fields the token may read', /^User \d$/.test(fields.actor_name) && /^198\.51\.100\./.test(fields.source_ip), fields);
  await shot(page, 'detail.png');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#detail', { state: 'hidden' });
  check('Escape closes it and the focus returns to the Details button',
    await page.evaluate(() => document.activeElement.textContent === 'Details' && !document.querySelector('#detail').open));

  // export the current filters: a ticket, then a download the browser streams
  await applyFilters(page, { category: 'scheme' });
  const nScheme = await countEvents(TOKENS.walter, { category: 'scheme' });
  const [ticket, download] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/exports') && r.request().method() === 'POST'),
    page.waitForEvent('download'),
    page.click('#export-csv')
  ]);
  const csvPath = path.join(DOWNLOADS, download.suggestedFilename());
  await download.saveAs(csvPath);
  const csv = fs.readFileSync(csvPath, 'utf8');
  const lines = csv.trimEnd().split('\n');
  check('Export CSV downloads custos-events.csv with every event of the filters (' + nScheme + ')',
    download.suggestedFilename() === 'custos-events.csv' && (await download.failure()) === null &&
    lines[0].startsWith('id,tenant,occurred_at') && lines.length - 1 === nScheme, { file: download.suggestedFilename(), lines: lines.length, nScheme });
  check('... with formulas neutralised and markup kept as data',
    csv.includes('"\'=HYPERLINK(""http://evil.example/"",""click"")"') && csv.includes('<img src=x onerror=""window.__xss=1"">'));
  const t = await ticket.json();
  check('the ticket is single-use and its URL carries no token',
    ticket.status() === 201 && /^\/v1\/exports\/[0-9a-f]{64}$/.test(t.href) &&
    (await fetch(GW + t.href)).status === 404, t);
  check('the page holds no export: its requests are the ticket and a navigation',
    await page.evaluate(() => !performance.getEntriesByType('resource').some((e) => e.name.includes('/v1/exports/'))));

  await applyFilters(page, {});
  const nAll = await countEvents(TOKENS.walter, {});
  const [dl2] = await Promise.all([page.waitForEvent('download'), page.click('#export-ndjson')]);
  const ndPath = path.join(DOWNLOADS, dl2.suggestedFilename());
  await dl2.saveAs(ndPath);
  const nd = fs.readFileSync(ndPath, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  check('Export NDJSON of all of acme\'s events the token sees (' + nAll + ')',
    dl2.suggestedFilename() === 'custos-events.ndjson' && nd.length >= nAll && nd.every((e) => e.tenant === 'acme'),
    { lines: nd.length, nAll });

  // chain status: sealed now, checked again
  psql('SELECT custos.seal()');
  await page.click('#chain-check');
  await page.waitForFunction(() => ['verified', 'pending', 'broken'].includes(document.querySelector('#chain-status').textContent));
  const status = await page.textContent('#chain-status');
  const head = await page.textContent('#chain-head');
  check('chain status of acme: verified, with the digest head', status === 'verified' && /^[0-9a-f]{64}$/.test(head), { status, head });
  await page.click('#chain-copy');
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  let digest = null;
  try { digest = JSON.parse(clip); } catch (e) { /* checked below */ }
  check('Copy digest puts the digest (JSON) on the clipboard', digest && digest.head === head && digest.tenant === 'acme', clip);
  const v = await api('GET', '/v1/verify?' + new URLSearchParams({ tenant: 'acme', digest: clip }), TOKENS.walter);
  check('... which GET /v1/verify accepts later', v.status === 200 && v.json.ok === true, v.text);
  check('no owner controls for a works council member', await page.isHidden('#owner'));
  const csp = await page.evaluate(() => window.__csp);
  check('no CSP violation in the whole session', csp.length === 0, csp);
  await context.close();
});

// ---------------------------------------------------------------------------
// Privacy mode hides the reseller's view; grants let it back in
// ---------------------------------------------------------------------------
await run('privacy', async () => {
  const rita = await newPage();
  await signIn(rita.page, TOKENS.rita);
  await applyFilters(rita.page, { tenant: 'clinic', category: 'patient' });
  let cells = await rita.page.$$eval('#event-table tbody tr td', (tds) => tds.map((t) => t.textContent));
  check('before: the reseller admin sees the clinic\'s personal fields',
    cells.includes('looked at camera 3 (patient-17)') && cells.includes('Dr. Olga'), cells);

  // the owner, with a token she issued herself (privacy mode needs one)
  const own = await api('POST', '/v1/tokens', TOKENS.olga, { kind: 'personal', valid_for: '1 hour', label: 'browser test' });
  const olgaTok = own.json && own.json.token;
  const olga = await newPage();
  await signIn(olga.page, olgaTok);
  await olga.page.waitForSelector('#owner:not([hidden])');
  await olga.page.waitForFunction(() => document.querySelector('#privacy-state').textContent !== '');
  check('the owner gets the privacy switch, off', !(await olga.page.isChecked('#privacy-mode')) &&
    (await olga.page.textContent('#privacy-state')) === 'off');
  await olga.page.focus('#privacy-mode');
  await Promise.all([
    olga.page.waitForResponse((r) => r.url().endsWith('/privacy-mode') && r.status() === 200),
    olga.page.keyboard.press('Space')
  ]);
  await olga.page.waitForFunction(() => document.querySelector('#privacy-state').textContent.startsWith('on'));
  check('Space on the switch turns privacy mode on', await olga.page.isChecked('#privacy-mode'));
  await shot(olga.page, 'owner.png');

  // the reseller signs in again: personal fields hidden
  await rita.page.click('#signout');
  await signIn(rita.page, TOKENS.rita);
  await applyFilters(rita.page, { tenant: 'clinic', category: 'patient' });
  cells = await rita.page.$$eval('#event-table tbody tr td', (tds) => tds.map((t) => t.textContent));
  check('after: the reseller sees the event, its personal fields "hidden"',
    cells.includes('VIEW') && !cells.includes('looked at camera 3 (patient-17)') && !cells.includes('Dr. Olga') &&
    cells.filter((c) => c === 'hidden').length >= 2, cells);
  await shot(rita.page, 'reseller-hidden.png');
  await rita.page.click('#event-table tbody tr button');
  await rita.page.waitForSelector('#detail[open]');
  const subj = await rita.page.$eval('#detail-fields dd[data-field=subject]', (d) => d.textContent);
  check('... in the detail too', subj === 'hidden', subj);
  await rita.page.keyboard.press('Escape');

  // the owner grants data.read for a while, with the form; then revokes it
  await olga.page.fill('#grant-principal', TOKENS.rita_id);
  await olga.page.selectOption('#grant-right', 'data.read');
  await Promise.all([
    olga.page.waitForResponse((r) => r.url().endsWith('/v1/grants') && r.status() === 201),
    olga.page.click('#grant-form button[type=submit]')
  ]);
  await olga.page.waitForSelector('#grants tbody tr');
  const grants = await olga.page.$$eval('#grants tbody tr', (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  check('the grant shows in the owner\'s grants list', grants.some((g) => g[1] === TOKENS.rita_id && g[2] === 'data.read'), grants);
  await applyFilters(rita.page, { tenant: 'clinic', category: 'patient' });
  cells = await rita.page.$$eval('#event-table tbody tr td', (tds) => tds.map((t) => t.textContent));
  check('with data.read the reseller sees the personal fields again', cells.includes('looked at camera 3 (patient-17)'), cells);
  await shot(olga.page, 'grants.png');
  await Promise.all([
    olga.page.waitForResponse((r) => r.url().includes('/v1/grants/') && r.status() === 204),
    olga.page.click('#grants tbody tr button')
  ]);
  await olga.page.waitForSelector('#grants-empty:not([hidden])');
  check('Revoke removes the grant from the list', (await olga.page.$$('#grants tbody tr')).length === 0);
  await applyFilters(rita.page, { tenant: 'clinic', category: 'patient' });
  cells = await rita.page.$$eval('#event-table tbody tr td', (tds) => tds.map((t) => t.textContent));
  check('... and the reseller\'s view is hidden again', !cells.includes('looked at camera 3 (patient-17)') && cells.includes('hidden'), cells);

  // switching off again
  await Promise.all([
    olga.page.waitForResponse((r) => r.url().endsWith('/privacy-mode') && r.status() === 200),
    olga.page.click('#privacy-mode')
  ]);
  await olga.page.waitForFunction(() => document.querySelector('#privacy-state').textContent === 'off');
  check('the owner switches privacy mode off', !(await olga.page.isChecked('#privacy-mode')));
  // the page after a reload still knows the state (from the log)
  await olga.page.reload();
  await olga.page.waitForFunction(() => document.querySelector('#privacy-state').textContent !== '');
  check('after a reload the page signs in from sessionStorage and shows the state from the log',
    (await olga.page.textContent('#privacy-state')) === 'off' && (await olga.page.isVisible('#app')));
  const errs = await rita.page.evaluate(() => window.__csp).then((a) => a.concat([]));
  check('no CSP violation', errs.length === 0, errs);
  await rita.context.close();
  await olga.context.close();
});

// ---------------------------------------------------------------------------
// A phone
// ---------------------------------------------------------------------------
await run('phone', async () => {
  const { context, page } = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await signIn(page, TOKENS.walter);
  await page.waitForFunction(() => document.querySelectorAll('#event-table tbody tr').length === 100);
  const fit = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, w: window.innerWidth }));
  check('on a phone (390 px) nothing scrolls sideways', fit.sw <= fit.w, fit);
  const cardLabel = await page.$eval('#event-table tbody td', (td) => getComputedStyle(td, '::before').content);
  check('... events are cards with labelled fields', cardLabel === '"Date"', cardLabel);
  check('... the filters start folded', await page.evaluate(() => !document.querySelector('#filters-details').open));
  await shot(page, 'phone.png');
  await page.locator('#event-table tbody tr button').first().click();
  await page.waitForSelector('#detail[open]');
  await shot(page, 'phone-detail.png');
  const dfit = await page.evaluate(() => document.querySelector('#detail').getBoundingClientRect().width <= window.innerWidth);
  check('... and the detail fits the screen', dfit);
  await context.close();
});

// ---------------------------------------------------------------------------
// A tampered chain shows as broken (last: it breaks acme's chain for good)
// ---------------------------------------------------------------------------
await run('broken chain', async () => {
  const { context, page } = await newPage();
  await signIn(page, TOKENS.walter);
  await page.waitForFunction(() => document.querySelector('#chain-status').textContent === 'verified');
  // the attacker: a superuser who bypasses custos' triggers and edits an event
  psql("BEGIN; SET LOCAL session_replication_role = replica; " +
       "UPDATE custos.event_log SET action = 'EDITED' WHERE id = (SELECT min(id) FROM custos.event_log WHERE tenant = 'acme'); COMMIT;");
  await page.click('#chain-check');
  await page.waitForFunction(() => ['verified', 'pending', 'broken'].includes(document.querySelector('#chain-status').textContent));
  const status = await page.textContent('#chain-status');
  const detail = await page.textContent('#chain-detail');
  check('an edited event: the chain status says broken, and how', status === 'broken' && /^modified at position \d+/.test(detail),
    { status, detail });
  await shot(page, 'chain-broken.png', { clip: { x: 0, y: 60, width: 1360, height: 220 } });
  await context.close();
});

check('no script error or console error on any page', pageErrors.length === 0, pageErrors);
await browser.close();
console.log('screenshots: ' + SHOTS);
console.log('browser: %d passed, %d failed', passed, failed);
process.exit(failed ? 1 : 0);
