// Perf tab (formats.md 9 and 11.5): a sim's files/results.json as a "steps" table, and an
// invocation's combined-results.json as "summary" plus "all steps", whose Sim links select the
// sim's run (upstream linked the sim name, which selects nothing).

import { h, replace } from './dom.js';
import { fmtBytes } from './format.js';

// `duration`: integer microseconds, else seconds, optionally with a unit (formats.md 6.8).
export function durationSecs(v) {
  if (v === null || v === undefined || v === '') return null;
  const s = String(v).trim();
  if (/^\d+$/.test(s)) return Number(s) / 1e6;
  const m = /^([0-9.eE+-]+)\s*(us|µs|ms|s)?$/.exec(s);
  if (!m) return null;
  const n = Number(m[1]);
  if (!Number.isFinite(n)) return null;
  return { us: n / 1e6, µs: n / 1e6, ms: n / 1e3, s: n }[m[2] || 's'];
}

const num = (v) =>
  v === null || v === undefined || v === '' || !Number.isFinite(Number(v)) ? null : Number(v);

export function stepMetrics(step) {
  const secs = durationSecs(step.duration);
  const down = num(step.down_bytes);
  const up = num(step.up_bytes);
  return {
    id: step.id ?? '',
    down_mbs: down !== null && secs ? down / (secs * 1e6) : null,
    up_mbs: up !== null && secs ? up / (secs * 1e6) : null,
    latency_ms: num(step.latency_ms),
    elapsed_s: secs,
    down_bytes: down,
    up_bytes: up,
  };
}

const COLUMNS = [
  ['ID', 'id', (v) => String(v)],
  ['Down MB/s', 'down_mbs', (v) => v.toFixed(2)],
  ['Up MB/s', 'up_mbs', (v) => v.toFixed(2)],
  ['Latency (ms)', 'latency_ms', (v) => v.toFixed(1)],
  ['Elapsed (s)', 'elapsed_s', (v) => v.toFixed(3)],
  ['Down Bytes', 'down_bytes', fmtBytes],
  ['Up Bytes', 'up_bytes', fmtBytes],
];

// Only the columns that have a value in some row.
function metricsTable(rows, lead = [], id = null) {
  const cols = COLUMNS.filter(([, key]) => key === 'id' || rows.some((r) => r.m[key] !== null));
  return h(
    'table',
    { class: 'grid perf-table', id },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        lead.map(([t]) => h('th', null, t)),
        cols.map(([t]) => h('th', null, t)),
      ),
    ),
    h(
      'tbody',
      null,
      rows.map((r) =>
        h(
          'tr',
          null,
          lead.map(([, cell]) => h('td', null, cell(r))),
          cols.map(([, key, f]) =>
            h('td', { class: key === 'id' ? null : 'num' }, r.m[key] === null ? '' : f(r.m[key])),
          ),
        ),
      ),
    ),
  );
}

export function renderRunPerf(container, results) {
  const steps = Array.isArray(results?.steps) ? results.steps : [];
  replace(
    container,
    h('h3', null, `steps${results?.sim ? ` — ${results.sim}` : ''}`),
    steps.length
      ? metricsTable(
          steps.map((s) => ({ m: stepMetrics(s) })),
          [],
          'perf-steps',
        )
      : h('p', { class: 'muted' }, 'results.json has no steps'),
  );
}

// The server's run for a combined entry: `<invocation>/<sim_dir>`, else the run whose last
// path component is sim_dir's, else the one labelled with the sim's name.
export function resolveRun(entry, invocation, runs) {
  const mine = runs.filter((r) => r.invocation === invocation);
  const dir = typeof entry.sim_dir === 'string' ? entry.sim_dir.replace(/\/+$/, '') : '';
  const last = dir.split('/').pop();
  return (
    (
      mine.find((r) => r.name === `${invocation}/${dir}`) ||
      (last && mine.find((r) => r.name.split('/').pop() === last)) ||
      mine.find((r) => r.label === entry.sim) ||
      null
    )?.name ?? null
  );
}

export function renderCombinedPerf(container, invocation, combined, runs, selectRun) {
  const entries = Array.isArray(combined?.runs) ? combined.runs : [];
  const all = [];
  for (const e of entries) for (const s of e.steps || []) all.push({ e, m: stepMetrics(s) });
  const sims = new Map();
  for (const r of all) {
    const key = r.e.sim ?? r.e.sim_dir ?? '?';
    if (!sims.has(key)) sims.set(key, { sim: key, e: r.e, n: 0, down: null, up: null, lat: null });
    const s = sims.get(key);
    s.n += 1;
    const max = (a, b) => (b === null ? a : a === null ? b : Math.max(a, b));
    s.down = max(s.down, r.m.down_mbs);
    s.up = max(s.up, r.m.up_mbs);
    if (r.m.latency_ms !== null)
      s.lat = s.lat === null ? r.m.latency_ms : Math.min(s.lat, r.m.latency_ms);
  }
  const simLink = (e) => {
    const run = resolveRun(e, invocation, runs);
    const label = e.sim ?? e.sim_dir ?? '?';
    return run
      ? h(
          'a',
          {
            href: '#',
            class: 'sim-link',
            dataset: { run },
            on: {
              click: (ev) => {
                ev.preventDefault();
                selectRun(run);
              },
            },
          },
          label,
        )
      : h('span', null, label);
  };
  const f = (v, d) => (v === null ? '' : v.toFixed(d));
  replace(
    container,
    h('h3', null, 'summary'),
    h(
      'table',
      { class: 'grid perf-summary', id: 'perf-summary' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ['Sim', 'N', 'Max Down (MB/s)', 'Max Up (MB/s)', 'Min Latency (ms)'].map((t) =>
            h('th', null, t),
          ),
        ),
      ),
      h(
        'tbody',
        null,
        [...sims.values()].map((s) =>
          h(
            'tr',
            null,
            h('td', null, simLink(s.e)),
            h('td', { class: 'num' }, String(s.n)),
            h('td', { class: 'num' }, f(s.down, 2)),
            h('td', { class: 'num' }, f(s.up, 2)),
            h('td', { class: 'num' }, f(s.lat, 1)),
          ),
        ),
      ),
    ),
    h('h3', null, 'all steps'),
    all.length
      ? metricsTable(all, [['Sim', (r) => simLink(r.e)]], 'perf-all-steps')
      : h('p', { class: 'muted' }, 'no steps'),
  );
}
