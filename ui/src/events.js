// Events tab: the lab's events.jsonl as a live table (opid, time, kind badge, k=v details)
// with a kind filter and a relative/absolute time toggle.

import { h, replace, throttleFrame } from './dom.js';
import { parseTs, fmtTime, kvPairs } from './format.js';

// Long labs can emit many thousands of events; the table shows the newest ones.
const MAX_ROWS = 5000;

export function kindBadge(kind) {
  return h('span', { class: `badge kind-${String(kind).replace(/[^a-zA-Z0-9_-]/g, '_')}` }, kind);
}

export function detailsCell(obj, skip) {
  return kvPairs(obj, skip).map(([k, v]) =>
    h(
      'span',
      { class: 'kv-pair' },
      h('span', { class: 'k' }, k),
      '=',
      h('span', { class: 'v' }, v),
    ),
  );
}

export function createEventsView(ctx) {
  let relative = true;
  let kindFilter = '';
  const kindSelect = h('select', {
    id: 'events-kind-filter',
    'aria-label': 'kind filter',
    on: {
      change: () => {
        kindFilter = kindSelect.value;
        render();
      },
    },
  });
  const timeBtn = h('button', {
    id: 'events-time-toggle',
    on: {
      click: () => {
        relative = !relative;
        render();
      },
    },
  });
  const count = h('span', { class: 'count', id: 'events-count' });
  const tbody = h('tbody');
  const el = h(
    'section',
    { class: 'view events-view', id: 'view-events' },
    h('div', { class: 'toolbar' }, count, h('label', null, 'kind ', kindSelect), timeBtn),
    h(
      'table',
      { class: 'grid events-table', id: 'events-table' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', null, 'opid'),
          h('th', null, 'time'),
          h('th', null, 'kind'),
          h('th', null, 'details'),
        ),
      ),
      tbody,
    ),
  );

  const render = () => {
    const events = ctx.store.events;
    const base = events.length ? parseTs(events[0].timestamp) : NaN;
    timeBtn.textContent = relative ? 'time: relative' : 'time: absolute';
    const kinds = new Map();
    for (const e of events) kinds.set(e.kind, (kinds.get(e.kind) || 0) + 1);
    const opts = [h('option', { value: '' }, `all kinds (${events.length})`)];
    for (const k of [...kinds.keys()].sort())
      opts.push(h('option', { value: k }, `${k} (${kinds.get(k)})`));
    replace(kindSelect, opts);
    kindSelect.value = kinds.has(kindFilter) ? kindFilter : '';
    const shown = kindFilter ? events.filter((e) => e.kind === kindFilter) : events;
    const rows = shown.slice(-MAX_ROWS);
    count.textContent =
      `${shown.length} events` +
      (rows.length < shown.length ? ` (newest ${rows.length} shown)` : '');
    replace(
      tbody,
      rows.map((e) =>
        h(
          'tr',
          { dataset: { kind: e.kind, opid: String(e.opid) } },
          h('td', { class: 'num' }, String(e.opid)),
          h('td', { class: 'time' }, fmtTime(parseTs(e.timestamp), base, relative)),
          h('td', null, kindBadge(e.kind)),
          h('td', { class: 'details' }, detailsCell(e, ['opid', 'timestamp', 'kind'])),
        ),
      ),
    );
  };
  return { el, update: throttleFrame(render), show: render, hide() {} };
}
