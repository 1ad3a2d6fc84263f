// Timeline tab (formats.md 11.4): the nodes' user events (our `<kind>.<node>.events.jsonl`, or
// `_events::<Kind>` lines of text logs) and the lab's own events (node `_lab`) on one time axis,
// one column per node. A cell opens its details and can jump to the node's log at that time.

import { h, replace, throttleFrame } from './dom.js';
import { readTail } from './api.js';
import { parseTs, fmtTime, fmtAbs, kvPairs } from './format.js';
import { parseJsonLines, textEvents } from './logparse.js';

const MAX_ROWS = 5000;
const POLL_MS = 2000;

// Which files feed the timeline: per node, its jsonl files, else its text/ANSI logs.
export function timelineSources(listing) {
  const byNode = new Map();
  for (const e of listing) {
    if (e.node === '_run' || !['jsonl', 'ansi_text', 'text'].includes(e.kind)) continue;
    if (!byNode.has(e.node)) byNode.set(e.node, []);
    byNode.get(e.node).push(e);
  }
  const out = [];
  for (const list of byNode.values()) {
    const jsonl = list.filter((e) => e.kind === 'jsonl');
    out.push(...(jsonl.length ? jsonl : list));
  }
  return out;
}

function rowsFromFile(entry, text) {
  if (entry.kind === 'jsonl') {
    const out = [];
    for (const r of parseJsonLines(text)) {
      const o = r.obj;
      if (!o || typeof o.kind !== 'string') continue;
      const ms = parseTs(o.timestamp);
      if (!Number.isFinite(ms)) continue;
      const { kind, timestamp, ...fields } = o;
      out.push({ node: entry.node, kind, ts: timestamp, ms, fields, path: entry.path });
    }
    return out;
  }
  return textEvents(text)
    .filter((e) => Number.isFinite(e.ms))
    .map((e) => ({
      node: entry.node,
      kind: e.kind,
      ts: e.ts,
      ms: e.ms,
      fields: e.fields,
      path: entry.path,
    }));
}

export function createTimelineView(ctx) {
  let relative = true;
  let selected = null;
  let fileRows = new Map(); // path -> rows
  let visible = false;
  let timer = null;
  let loading = null;

  const grid = h('div', { class: 'timeline-grid', id: 'timeline-grid' });
  const panel = h('aside', {
    class: 'detail-panel timeline-detail',
    id: 'timeline-detail',
    hidden: true,
  });
  const timeBtn = h('button', {
    id: 'timeline-time-toggle',
    on: {
      click: () => {
        relative = !relative;
        render();
      },
    },
  });
  const count = h('span', { class: 'count', id: 'timeline-count' });
  const el = h(
    'section',
    { class: 'view timeline-view', id: 'view-timeline' },
    h('div', { class: 'timeline-main' }, h('div', { class: 'toolbar' }, count, timeBtn), grid),
    panel,
  );

  async function reload() {
    if (loading) return loading;
    loading = (async () => {
      const sources = timelineSources(ctx.logs() || []);
      const next = new Map();
      await Promise.all(
        sources.map(async (entry) => {
          try {
            const r = await readTail(ctx.run, entry.path);
            next.set(entry.path, rowsFromFile(entry, r.text));
          } catch {
            next.set(entry.path, fileRows.get(entry.path) || []);
          }
        }),
      );
      fileRows = next;
      loading = null;
      render();
    })();
    return loading;
  }

  function allRows() {
    const rows = [];
    for (const list of fileRows.values()) rows.push(...list);
    for (const e of ctx.store.events) {
      const { opid, timestamp, kind, ...fields } = e;
      rows.push({
        node: '_lab',
        kind,
        ts: timestamp,
        ms: parseTs(timestamp),
        fields: { opid, ...fields },
        path: null,
      });
    }
    rows.sort((a, b) => a.ms - b.ms);
    return rows;
  }

  function render() {
    const rows = allRows().slice(-MAX_ROWS);
    const nodes = [...new Set(rows.map((r) => r.node))].sort();
    const base = rows.length ? rows[0].ms : NaN;
    timeBtn.textContent = relative ? 'time: relative' : 'time: absolute';
    count.textContent = `${rows.length} events · ${nodes.length} nodes`;
    const table = h(
      'table',
      { class: 'grid timeline-table', id: 'timeline-table' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', null, 'time'),
          nodes.map((n) => h('th', { dataset: { node: n } }, n)),
        ),
      ),
      h(
        'tbody',
        null,
        rows.map((r) =>
          h(
            'tr',
            null,
            h('td', { class: 'time' }, fmtTime(r.ms, base, relative)),
            nodes.map((n) =>
              n !== r.node
                ? h('td')
                : h(
                    'td',
                    { class: 'cell' },
                    h(
                      'button',
                      {
                        class: [
                          'tl-event',
                          r.node === '_lab' ? 'tl-lab' : 'tl-user',
                          selected === r && 'selected',
                        ],
                        dataset: { node: r.node, kind: r.kind },
                        on: {
                          click: () => {
                            selected = r;
                            render();
                          },
                        },
                      },
                      r.kind,
                    ),
                  ),
            ),
          ),
        ),
      ),
    );
    replace(grid, rows.length ? table : h('p', { class: 'muted' }, 'no events yet'));
    renderPanel(base);
  }

  function jumpTarget(r) {
    const listing = ctx.logs() || [];
    if (r.node === '_lab')
      return listing.find((e) => e.kind === 'lab_events')?.path || 'events.jsonl';
    return listing.find((e) => e.node === r.node && e.kind === 'tracing_jsonl')?.path || r.path;
  }

  function renderPanel(base) {
    panel.hidden = !selected;
    if (!selected) return;
    const r = selected;
    replace(
      panel,
      h(
        'button',
        {
          class: 'close',
          title: 'close',
          on: {
            click: () => {
              selected = null;
              render();
            },
          },
        },
        '×',
      ),
      h('h3', { id: 'timeline-detail-title' }, `${r.node} · ${r.kind}`),
      h(
        'p',
        { class: 'mono' },
        `${fmtAbs(r.ms)} (${fmtTime(r.ms, base, true)})`,
        h('br'),
        r.ts || '',
      ),
      h(
        'table',
        { class: 'kv' },
        h(
          'tbody',
          null,
          kvPairs(r.fields).map(([k, v]) => h('tr', null, h('th', null, k), h('td', null, v))),
        ),
      ),
      h(
        'button',
        {
          id: 'jump-to-logs',
          on: { click: () => ctx.jumpToLogs(jumpTarget(r), { ts: r.ts, ms: r.ms }) },
        },
        'jump to logs',
      ),
    );
  }

  function schedule() {
    clearTimeout(timer);
    if (!visible || !ctx.isLive()) return;
    timer = setTimeout(async () => {
      await reload();
      schedule();
    }, POLL_MS);
  }

  const update = throttleFrame(() => visible && render());
  return {
    el,
    update,
    async show() {
      visible = true;
      render();
      await reload();
      schedule();
    },
    // The run's file list changed (a node wrote its first event).
    filesChanged() {
      if (visible) reload();
    },
    hide() {
      visible = false;
      clearTimeout(timer);
    },
    dispose() {
      visible = false;
      clearTimeout(timer);
    },
  };
}
