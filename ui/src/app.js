// Shell: top bar (run selector, status, opid), tabs and the hash route
// (#/run/<name>/<tab> or #/invocation/<name>). Owns the per-run context that the tab views
// share: the event store fed by the run's event stream, and the run's file listing.

import { h, replace, throttleFrame } from './dom.js';
import {
  listRuns,
  listLogs,
  getState,
  getJson,
  getCombined,
  openStream,
  openStreamCount,
  runSeg,
  fileUrl,
  HttpError,
} from './api.js';
import { RunStore, enrichFromStateJson } from './state.js';
import { createTopologyView } from './topology.js';
import { createEventsView } from './events.js';
import { createLogsView } from './logs.js';
import { createTimelineView } from './timeline.js';
import { createCapturesView } from './captures.js';
import { renderRunPerf, renderCombinedPerf } from './perf.js';

const RUN_TABS = ['topology', 'events', 'logs', 'timeline', 'captures', 'perf'];
const LISTING_POLL_MS = 2000;
const STATE_DEBOUNCE_MS = 300;

const ui = {
  select: document.getElementById('run-select'),
  status: document.getElementById('run-status'),
  opid: document.getElementById('run-opid'),
  tabs: document.getElementById('tabs'),
  main: document.getElementById('main'),
  conn: document.getElementById('conn'),
};

let runs = [];
let current = null; // {type: 'run'|'invocation', name, tab, ...}

// --- route -------------------------------------------------------------------------------------

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  if (parts[0] === 'run' && parts[1]) {
    return {
      type: 'run',
      name: decodeURIComponent(parts[1]),
      tab: RUN_TABS.includes(parts[2]) ? parts[2] : 'topology',
    };
  }
  if (parts[0] === 'invocation' && parts[1])
    return { type: 'invocation', name: decodeURIComponent(parts[1]), tab: 'perf' };
  return null;
}

function setHash(route) {
  const hash =
    route.type === 'run'
      ? `#/run/${runSeg(route.name)}/${route.tab}`
      : `#/invocation/${encodeURIComponent(route.name)}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

// --- run list ----------------------------------------------------------------------------------

function runLabel(r) {
  if (r.label) return r.label;
  return r.invocation && r.name.startsWith(`${r.invocation}/`)
    ? r.name.slice(r.invocation.length + 1)
    : r.name;
}

// Groups runs by invocation in list order (the server sorts names descending: newest first).
export function groupRuns(list) {
  const out = [];
  const groups = new Map();
  for (const r of list) {
    if (!r.invocation) {
      out.push({ run: r });
      continue;
    }
    if (!groups.has(r.invocation)) {
      const g = { invocation: r.invocation, runs: [] };
      groups.set(r.invocation, g);
      out.push(g);
    }
    groups.get(r.invocation).runs.push(r);
  }
  return out;
}

function renderSelector() {
  const opts = [];
  if (!runs.length) opts.push(h('option', { value: '' }, 'no runs yet'));
  for (const item of groupRuns(runs)) {
    if (item.run) {
      opts.push(h('option', { value: `run:${item.run.name}` }, runLabel(item.run)));
      continue;
    }
    const children = [];
    if (item.runs.length > 1) {
      children.push(
        h('option', { value: `inv:${item.invocation}` }, `combined (${item.runs.length} sims)`),
      );
    }
    for (const r of item.runs) children.push(h('option', { value: `run:${r.name}` }, runLabel(r)));
    opts.push(h('optgroup', { label: item.invocation }, children));
  }
  if (current && !runs.some((r) => r.name === current.name) && current.type === 'run') {
    opts.push(h('option', { value: `run:${current.name}` }, `${current.name} (gone)`));
  }
  replace(ui.select, opts);
  if (current) ui.select.value = `${current.type === 'run' ? 'run' : 'inv'}:${current.name}`;
}

async function refreshRuns() {
  try {
    runs = await listRuns();
  } catch (err) {
    ui.conn.textContent = `run list: ${err.message}`;
    return;
  }
  renderSelector();
  if (!current && runs.length) {
    const r = parseHash();
    select(r || { type: 'run', name: runs[0].name, tab: 'topology' });
  } else if (current && current.type === 'run') {
    // The listing's status is what state.json says; the live stream normally knows first.
    updateTopBar();
  }
}

ui.select.addEventListener('change', () => {
  const v = ui.select.value;
  if (v.startsWith('run:'))
    select({
      type: 'run',
      name: v.slice(4),
      tab: current?.tab && current.type === 'run' ? current.tab : 'topology',
    });
  else if (v.startsWith('inv:')) select({ type: 'invocation', name: v.slice(4), tab: 'perf' });
});

// --- top bar and tabs --------------------------------------------------------------------------

function updateTopBar() {
  if (!current) {
    ui.status.textContent = '';
    ui.opid.textContent = '';
    return;
  }
  if (current.type === 'invocation') {
    ui.status.textContent = `${runs.filter((r) => r.invocation === current.name).length} sims`;
    ui.opid.textContent = '';
    return;
  }
  const st = current.store.state;
  const listed = runs.find((r) => r.name === current.name);
  const status = st.status || listed?.status || '';
  ui.status.textContent = status;
  ui.status.className = `status status-${status || 'unknown'}`;
  ui.opid.textContent = st.opid >= 0 ? `opid: ${st.opid}` : '';
}

function renderTabs() {
  const tabs =
    current.type === 'invocation'
      ? ['perf']
      : RUN_TABS.filter((t) => t !== 'perf' || current.results);
  replace(
    ui.tabs,
    tabs.map((t) =>
      h(
        'button',
        {
          class: ['tab', current.tab === t && 'active'],
          role: 'tab',
          'aria-selected': String(current.tab === t),
          dataset: { tab: t },
          on: { click: () => switchTab(t) },
        },
        t,
      ),
    ),
  );
}

function switchTab(tab) {
  if (!current) return;
  const prev = current.views?.[current.tab];
  if (prev && current.tab !== tab) prev.hide();
  current.tab = tab;
  setHash(current);
  renderTabs();
  if (current.type === 'invocation') return;
  const view = current.views[tab];
  replace(ui.main, view ? view.el : h('p', { class: 'muted' }, 'no such tab'));
  if (view) view.show();
  // Files can appear after the lab stopped (failure artifacts), when the listing is no longer
  // polled; opening a tab looks again.
  refreshListing(current);
}

// --- one run -----------------------------------------------------------------------------------

function disposeCurrent() {
  if (!current) return;
  for (const c of current.cleanups || []) c();
  for (const v of Object.values(current.views || {}))
    if (v.dispose) v.dispose();
    else v.hide();
}

function select(route) {
  disposeCurrent();
  current = route.type === 'run' ? startRun(route) : startInvocation(route);
  setHash(current);
  renderSelector();
  updateTopBar();
  renderTabs();
  if (current.type === 'run') switchTab(current.tab);
}

function startRun(route) {
  const ctx = {
    type: 'run',
    name: route.name,
    run: route.name,
    tab: route.tab,
    store: new RunStore(),
    listing: [],
    results: null,
    cleanups: [],
    logs: () => ctx.listing,
    isLive: () => ctx.store.state.status !== 'stopped',
    jumpToLogs: (path, jump) => {
      switchTab('logs');
      ctx.views.logs.open(path, jump);
    },
  };
  ctx.views = {
    topology: createTopologyView(ctx),
    events: createEventsView(ctx),
    logs: createLogsView(ctx),
    timeline: createTimelineView(ctx),
    captures: createCapturesView(ctx),
    perf: createPerfView(ctx),
  };

  // Events: one stream from opid 0; the store replays history, then follows the tail.
  let stateTimer = null;
  // state.json carries what events do not (nat_config after a change, seed, backend). It is
  // optional (an upstream run may lack it), so it is only asked for once the listing has it.
  ctx.enrichSoon = () => {
    clearTimeout(stateTimer);
    if (!ctx.listing.some((e) => e.path === 'state.json')) return;
    stateTimer = setTimeout(async () => {
      try {
        const doc = await getState(ctx.run);
        if (current === ctx && enrichFromStateJson(ctx.store.state, doc)) onChange();
      } catch {
        // Replaced between listing and reading; the next event retries.
      }
    }, STATE_DEBOUNCE_MS);
  };
  const onChange = throttleFrame(() => {
    if (current !== ctx) return;
    updateTopBar();
    for (const v of Object.values(ctx.views)) v.update();
  });
  const stream = openStream(
    `/api/runs/${runSeg(ctx.run)}/events?after=0`,
    (ev) => {
      if (current !== ctx || typeof ev !== 'object') return;
      const wasLive = ctx.isLive();
      ctx.store.push(ev);
      onChange();
      ctx.enrichSoon();
      // The run just stopped: read the final file list once more (artifacts appear at the end).
      if (wasLive && !ctx.isLive()) setTimeout(() => refreshListing(ctx), 200);
    },
    (s) => {
      ui.conn.textContent = s === 'retry' ? 'event stream reconnecting…' : '';
    },
  );
  ctx.cleanups.push(
    () => stream.close(),
    () => clearTimeout(stateTimer),
  );

  // The file list grows while the run is live (node files are created on their first line).
  let listTimer = null;
  const pollListing = async () => {
    await refreshListing(ctx);
    if (current === ctx && (ctx.isLive() || ctx.store.state.opid < 0))
      listTimer = setTimeout(pollListing, LISTING_POLL_MS);
  };
  pollListing();
  ctx.cleanups.push(() => clearTimeout(listTimer));
  return ctx;
}

async function refreshListing(ctx) {
  let listing;
  try {
    listing = await listLogs(ctx.run);
  } catch {
    return;
  }
  if (current !== ctx) return;
  const changed = JSON.stringify(listing) !== JSON.stringify(ctx.listing);
  ctx.listing = listing;
  if (!changed) return;
  ctx.enrichSoon();
  for (const v of Object.values(ctx.views)) {
    if (v.filesChanged) v.filesChanged();
    v.update();
  }
  const results = RESULTS_PATHS.find((p) => listing.some((e) => e.path === p));
  if (!ctx.results && results) loadResults(ctx, results);
}

// Perf exists only when the run's results load (formats.md 11.1): the runner writes
// results.json at the top of the sim's directory, a LabTest writes it under files/.
const RESULTS_PATHS = ['results.json', 'files/results.json'];

async function loadResults(ctx, path) {
  try {
    const res = await getJson(fileUrl(ctx.run, path));
    if (current !== ctx || !res || typeof res !== 'object') return;
    ctx.results = res;
    renderTabs();
    ctx.views.perf.update();
    if (ctx.tab === 'perf') switchTab('perf');
  } catch (err) {
    if (!(err instanceof HttpError)) console.warn(err);
  }
}

function createPerfView(ctx) {
  const el = h('section', { class: 'view perf-view', id: 'view-perf' });
  const render = () =>
    ctx.results
      ? renderRunPerf(el, ctx.results)
      : replace(el, h('p', { class: 'muted' }, 'no results.json in this run'));
  return { el, show: render, update: render, hide() {} };
}

// --- an invocation ("combined") ----------------------------------------------------------------

function startInvocation(route) {
  const ctx = { type: 'invocation', name: route.name, tab: 'perf', cleanups: [], views: {} };
  const el = h(
    'section',
    { class: 'view perf-view combined', id: 'view-perf' },
    h('p', { class: 'muted' }, 'loading…'),
  );
  replace(ui.main, el);
  getCombined(route.name)
    .then((combined) => {
      if (current !== ctx) return;
      renderCombinedPerf(el, route.name, combined, runs, (run) =>
        select({ type: 'run', name: run, tab: 'perf' }),
      );
    })
    .catch((err) => {
      if (current === ctx)
        replace(
          el,
          h(
            'p',
            { class: 'muted' },
            err.status === 404 ? 'this invocation has no combined-results.json' : err.message,
          ),
        );
    });
  return ctx;
}

// --- start -------------------------------------------------------------------------------------

window.addEventListener('hashchange', () => {
  const r = parseHash();
  if (!r) return;
  if (current && r.type === current.type && r.name === current.name) {
    if (r.tab !== current.tab) switchTab(r.tab);
  } else {
    select(r);
  }
});

// For the browser tests: open event streams, and the reducer's state to compare with state.json.
window.patchbayDebug = {
  openStreams: openStreamCount,
  state: () => (current && current.store ? JSON.parse(JSON.stringify(current.store.state)) : null),
};

openStream(
  '/api/runs/subscribe',
  (data) => {
    if (data === 'update') refreshRuns();
  },
  (s) => {
    // Reconnected after a server restart: the list may have changed while we were away.
    if (s === 'open') refreshRuns();
  },
);
refreshRuns().then(() => {
  if (!runs.length)
    replace(
      ui.main,
      h(
        'p',
        { class: 'muted', id: 'no-runs' },
        'No runs yet. Run a lab with PATCHBAY_OUTDIR set to the served directory; it appears here by itself.',
      ),
    );
});
