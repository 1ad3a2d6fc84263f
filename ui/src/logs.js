// Logs tab: the run's files grouped by node, each shown by a renderer for its kind (docs/serve.md
// "Log listing"). Tracing logs get a toolbar: spans/target/time toggles, level toggles, a target
// filter and search with previous/next. The open file of a live run is tail-polled.

import { h, replace } from './dom.js';
import { fileUrl, readTail, readAfter, TAIL_BYTES } from './api.js';
import { parseTs, fmtTime, fmtBytes } from './format.js';
import {
  LEVELS,
  parseLogText,
  parseJsonLines,
  parseQlog,
  flatten,
  spansText,
  fieldsText,
  splitLines,
} from './logparse.js';
import { kindBadge, detailsCell } from './events.js';

const AUTO_LOAD = new Set(['tracing_jsonl', 'jsonl', 'json', 'qlog', 'lab_events']);
const TAIL_POLL_MS = 1500;
// A followed file keeps at most this much text in the page.
const MAX_TEXT = 4 * TAIL_BYTES;
// Jumps land on the exact timestamp, else the nearest line within this window.
export const JUMP_WINDOW_MS = 2000;

// The file's name without the `device.<node>.` / `router.<node>.` prefix, for both kinds
// (upstream stripped only device prefixes).
export function fileLabel(entry) {
  const slash = entry.path.lastIndexOf('/');
  const dir = slash >= 0 ? entry.path.slice(0, slash + 1) : '';
  let base = entry.path.slice(slash + 1);
  for (const k of ['device', 'router']) {
    const p = `${k}.${entry.node}.`;
    if (base.startsWith(p)) base = base.slice(p.length);
  }
  return dir + base;
}

// Index of the entry with exactly this timestamp, else the nearest within JUMP_WINDOW_MS.
export function nearestIndex(items, ts, ms) {
  let best = -1;
  let bestD = Infinity;
  for (let i = 0; i < items.length; i++) {
    if (ts && items[i].ts === ts) return i;
    const d = Math.abs(items[i].ms - ms);
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  }
  return bestD <= JUMP_WINDOW_MS ? best : -1;
}

function jsonTree(value, depth = 0) {
  if (value === null || typeof value !== 'object') {
    return h(
      'span',
      { class: `json-${value === null ? 'null' : typeof value}` },
      JSON.stringify(value),
    );
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const summary = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
  return h(
    'details',
    { class: 'json-node', open: depth < 2 },
    h('summary', null, summary),
    h(
      'ul',
      null,
      entries.map(([k, v]) =>
        h('li', null, h('span', { class: 'json-key' }, String(k)), ': ', jsonTree(v, depth + 1)),
      ),
    ),
  );
}

export function createLogsView(ctx) {
  const sidebar = h('nav', { class: 'logs-sidebar', id: 'logs-sidebar' });
  const toolbar = h('div', { class: 'toolbar file-toolbar', id: 'log-file-toolbar' });
  const subbar = h('div', { class: 'toolbar log-subbar', id: 'log-subbar' });
  const body = h('div', { class: 'log-body', id: 'log-body' });
  const el = h(
    'section',
    { class: 'view logs-view', id: 'view-logs' },
    sidebar,
    h('div', { class: 'logs-main' }, toolbar, subbar, body),
  );

  const opts = {
    spans: true,
    target: true,
    relative: true,
    levels: new Set(LEVELS),
    targetFilter: '',
    query: '',
    current: -1,
    jsonRelative: true,
    qlogRaw: false,
    qlogFilter: '',
  };
  let file = null; // {entry, text, size, truncated, offset, loaded, error, jump}
  let items = []; // rendered entries: {ts, ms, el, text, hidden}
  let timer = null;
  let generation = 0;

  const entries = () => ctx.logs() || [];

  function renderSidebar() {
    const groups = new Map();
    for (const e of entries()) {
      if (!groups.has(e.node)) groups.set(e.node, []);
      groups.get(e.node).push(e);
    }
    replace(
      sidebar,
      groups.size
        ? [...groups.entries()].map(([node, list]) =>
            h(
              'div',
              { class: 'log-group', dataset: { node } },
              h('div', { class: 'log-group-title' }, node),
              list.map((e) =>
                h(
                  'a',
                  {
                    href: '#',
                    class: ['log-file', file && file.entry.path === e.path && 'active'],
                    dataset: { path: e.path, kind: e.kind },
                    title: e.path,
                    on: {
                      click: (ev) => {
                        ev.preventDefault();
                        open(e.path);
                      },
                    },
                  },
                  fileLabel(e),
                  ' ',
                  h('span', { class: 'log-kind' }, `[${e.kind}]`),
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'no log files yet'),
    );
  }

  async function load(gen) {
    const { entry } = file;
    try {
      const r = await readTail(ctx.run, entry.path);
      if (gen !== generation) return;
      Object.assign(file, {
        text: r.text,
        size: r.size,
        truncated: r.truncated,
        offset: r.size,
        loaded: true,
        error: null,
      });
    } catch (err) {
      if (gen !== generation) return;
      Object.assign(file, { loaded: true, error: String(err.message || err) });
    }
    renderFile();
    schedulePoll(gen);
  }

  function schedulePoll(gen) {
    clearTimeout(timer);
    if (!ctx.isLive() || !file || file.error || file.text === undefined) return;
    timer = setTimeout(async () => {
      if (gen !== generation || !file) return;
      try {
        const more = await readAfter(ctx.run, file.entry.path, file.offset);
        if (gen !== generation) return;
        if (more) {
          file.offset += new TextEncoder().encode(more).length;
          file.size = file.offset;
          file.text += more;
          if (file.text.length > MAX_TEXT) {
            const cut = file.text.indexOf('\n', file.text.length - MAX_TEXT);
            file.text = file.text.slice(cut + 1);
            file.truncated = true;
          }
          renderFile(true);
        }
      } catch {
        // The file may be between writes or the run gone; the next poll retries.
      }
      schedulePoll(gen);
    }, TAIL_POLL_MS);
  }

  // Opens a file; `jump` = {ts, ms} highlights the matching line once loaded.
  function open(path, jump = null) {
    const entry = entries().find((e) => e.path === path) || { path, node: '_run', kind: 'text' };
    generation += 1;
    clearTimeout(timer);
    file = { entry, text: undefined, loaded: false, error: null, jump };
    opts.query = '';
    opts.current = -1;
    renderSidebar();
    if (AUTO_LOAD.has(entry.kind) || jump) load(generation);
    else renderFile();
  }

  function renderToolbar() {
    const e = file.entry;
    const lines = file.text === undefined ? null : splitLines(file.text).length;
    replace(
      toolbar,
      h('span', { class: 'path mono', id: 'log-path' }, e.path),
      h(
        'a',
        { href: fileUrl(ctx.run, e.path), download: e.path.split('/').pop(), id: 'log-download' },
        'download',
      ),
      file.size !== undefined
        ? h('span', { class: 'muted', id: 'log-size' }, fmtBytes(file.size))
        : null,
      lines !== null ? h('span', { class: 'muted', id: 'log-lines' }, `${lines} lines`) : null,
      file.truncated
        ? h('span', { class: 'warn' }, `showing the last ${fmtBytes(TAIL_BYTES)}`)
        : null,
      file.jump ? h('span', { class: 'jump', id: 'log-jump' }, `jump: ${file.jump.ts}`) : null,
    );
  }

  function renderFile(appended = false) {
    if (!file) {
      replace(toolbar);
      replace(subbar);
      replace(body, h('p', { class: 'muted' }, 'select a file'));
      return;
    }
    renderToolbar();
    const kind = file.entry.kind;
    if (!file.loaded) {
      replace(subbar);
      if (kind === 'pcap') {
        replace(
          body,
          h(
            'p',
            null,
            'packet capture: open it with Wireshark or ',
            h('code', null, 'tcpdump -r'),
            ' (download above, or the captures tab).',
          ),
        );
      } else if (AUTO_LOAD.has(kind) || file.jump) {
        replace(body, h('p', { class: 'muted' }, 'loading…'));
      } else {
        replace(
          body,
          h(
            'button',
            {
              id: 'load-log',
              on: {
                click: () => {
                  file.loaded = false;
                  replace(body, h('p', { class: 'muted' }, 'loading…'));
                  load(generation);
                },
              },
            },
            'load log',
          ),
        );
      }
      return;
    }
    if (file.error) {
      replace(subbar);
      replace(body, h('p', { class: 'error' }, file.error));
      return;
    }
    const scroller = body;
    const atBottom =
      appended && scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 8;
    if (kind === 'lab_events' || kind === 'jsonl') renderJsonl(kind);
    else if (kind === 'json') renderJson();
    else if (kind === 'qlog') renderQlog();
    else renderTracing();
    if (file.jump && !appended) applyJump();
    else if (atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  function applyJump() {
    const { ts, ms } = file.jump;
    const i = nearestIndex(items, ts, ms);
    for (const it of items) it.el.classList.remove('highlight');
    const note = document.getElementById('log-jump');
    if (i < 0) {
      if (note) note.textContent = `jump: ${ts} (no line within ${JUMP_WINDOW_MS / 1000} s)`;
      return;
    }
    const it = items[i];
    if (it.hidden) {
      // A filter hid the target line; show everything so the jump lands.
      opts.levels = new Set(LEVELS);
      opts.targetFilter = '';
      renderFile(true);
      return applyJump();
    }
    it.el.classList.add('highlight');
    it.el.scrollIntoView({ block: 'center' });
  }

  function renderJsonl(kind) {
    const rows = parseJsonLines(file.text).filter((r) => r.obj && typeof r.obj === 'object');
    const base = rows.length ? parseTs(rows[0].obj.timestamp) : NaN;
    const skip = kind === 'lab_events' ? ['kind', 'timestamp', 'opid'] : ['kind', 'timestamp'];
    replace(
      subbar,
      h('span', { class: 'count', id: 'jsonl-count' }, `${rows.length} events`),
      h(
        'button',
        {
          on: {
            click: () => {
              opts.jsonRelative = !opts.jsonRelative;
              renderFile(true);
            },
          },
        },
        opts.jsonRelative ? 'time: relative' : 'time: absolute',
      ),
    );
    items = rows.map((r) => {
      const o = r.obj;
      const ms = parseTs(o.timestamp);
      const label = o.kind ?? o.name ?? o.event ?? '';
      const tr = h(
        'tr',
        { class: 'jsonl-row', dataset: { kind: String(label) } },
        h('td', { class: 'time' }, Number.isFinite(ms) ? fmtTime(ms, base, opts.jsonRelative) : ''),
        h('td', null, label !== '' ? kindBadge(String(label)) : ''),
        h('td', { class: 'details' }, detailsCell(o, skip)),
      );
      return { ts: o.timestamp ?? null, ms, el: tr };
    });
    replace(
      body,
      h(
        'table',
        { class: 'grid jsonl-table', id: 'jsonl-table' },
        h(
          'thead',
          null,
          h('tr', null, h('th', null, 'time'), h('th', null, 'kind'), h('th', null, 'details')),
        ),
        h(
          'tbody',
          null,
          items.map((i) => i.el),
        ),
      ),
    );
  }

  function renderJson() {
    items = [];
    replace(subbar);
    let doc;
    try {
      doc = JSON.parse(file.text);
    } catch (err) {
      replace(
        body,
        h('p', { class: 'error' }, `not valid JSON: ${err.message}`),
        h('pre', null, file.text),
      );
      return;
    }
    replace(body, h('div', { class: 'json-tree' }, jsonTree(doc)));
  }

  function renderQlog() {
    const events = parseQlog(file.text);
    const names = [...new Set(events.map((e) => e.name))].sort();
    const sel = h(
      'select',
      {
        on: {
          change: () => {
            opts.qlogFilter = sel.value;
            renderFile(true);
          },
        },
      },
      h('option', { value: '' }, `all (${events.length})`),
      names.map((n) => h('option', { value: n }, n)),
    );
    sel.value = opts.qlogFilter;
    replace(
      subbar,
      h('label', null, 'event ', sel),
      h(
        'button',
        {
          on: {
            click: () => {
              opts.qlogRaw = !opts.qlogRaw;
              renderFile(true);
            },
          },
        },
        opts.qlogRaw ? 'table' : 'raw',
      ),
    );
    items = [];
    if (opts.qlogRaw) {
      replace(body, h('pre', { class: 'raw' }, file.text));
      return;
    }
    const shown = opts.qlogFilter ? events.filter((e) => e.name === opts.qlogFilter) : events;
    replace(
      body,
      h(
        'table',
        { class: 'grid qlog-table' },
        h(
          'thead',
          null,
          h('tr', null, h('th', null, 'time (ms)'), h('th', null, 'name'), h('th', null, 'data')),
        ),
        h(
          'tbody',
          null,
          shown.map((e) =>
            h(
              'tr',
              null,
              h('td', { class: 'num' }, Number.isFinite(e.time) ? e.time.toFixed(3) : ''),
              h('td', null, kindBadge(e.name)),
              h(
                'td',
                { class: 'details' },
                Object.entries(flatten(e.data)).map(([k, v]) =>
                  h(
                    'span',
                    { class: 'kv-pair' },
                    h('span', { class: 'k' }, `data.${k}`),
                    '=',
                    h('span', { class: 'v' }, v),
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function renderTracing() {
    const entriesParsed = parseLogText(file.entry.kind, file.text);
    const base = entriesParsed.find((e) => Number.isFinite(e.ms))?.ms ?? NaN;
    const targets = [...new Set(entriesParsed.map((e) => e.target).filter(Boolean))].sort();
    if (opts.targetFilter && !targets.includes(opts.targetFilter)) opts.targetFilter = '';
    const toggle = (label, key, id) =>
      h(
        'button',
        {
          id,
          class: ['toggle', opts[key] && 'on'],
          'aria-pressed': String(!!opts[key]),
          on: {
            click: () => {
              opts[key] = !opts[key];
              renderFile(true);
            },
          },
        },
        label,
      );
    const levelBtns = LEVELS.map((lv) =>
      h(
        'button',
        {
          class: [
            'toggle',
            'level-toggle',
            `level-${lv.toLowerCase()}`,
            opts.levels.has(lv) && 'on',
          ],
          dataset: { level: lv },
          'aria-pressed': String(opts.levels.has(lv)),
          on: {
            click: () => {
              opts.levels.has(lv) ? opts.levels.delete(lv) : opts.levels.add(lv);
              renderFile(true);
            },
          },
        },
        lv,
      ),
    );
    const targetSel = h(
      'select',
      {
        id: 'log-target-filter',
        'aria-label': 'target filter',
        on: {
          change: () => {
            opts.targetFilter = targetSel.value;
            renderFile(true);
          },
        },
      },
      h('option', { value: '' }, 'all targets'),
      targets.map((t) => h('option', { value: t }, t)),
    );
    targetSel.value = opts.targetFilter;
    const search = h('input', {
      type: 'search',
      id: 'log-search',
      placeholder: 'search',
      value: opts.query,
      on: {
        input: () => {
          opts.query = search.value;
          opts.current = -1;
          markMatches(true);
        },
        keydown: (ev) => {
          if (ev.key === 'Enter') step(ev.shiftKey ? -1 : 1);
        },
      },
    });
    const counter = h('span', { class: 'search-count', id: 'log-search-count' });
    replace(
      subbar,
      toggle('spans', 'spans', 'toggle-spans'),
      toggle('target', 'target', 'toggle-target'),
      h(
        'button',
        {
          id: 'toggle-time',
          on: {
            click: () => {
              opts.relative = !opts.relative;
              renderFile(true);
            },
          },
        },
        opts.relative ? 'time: relative' : 'time: absolute',
      ),
      h('span', { class: 'levels' }, levelBtns),
      targetSel,
      search,
      h(
        'button',
        { id: 'search-prev', title: 'previous match', on: { click: () => step(-1) } },
        '↑',
      ),
      h('button', { id: 'search-next', title: 'next match', on: { click: () => step(1) } }, '↓'),
      counter,
    );

    items = entriesParsed.map((e) => {
      const hidden =
        (e.level && !opts.levels.has(e.level)) ||
        (opts.targetFilter && e.target !== opts.targetFilter);
      const st = spansText(e.spans);
      const ft = fieldsText(e.fields);
      // Parts are separated by real spaces so a copied line reads like the file.
      const parts = [
        h(
          'span',
          { class: 'time' },
          Number.isFinite(e.ms) ? fmtTime(e.ms, base, opts.relative) : '',
        ),
        e.level
          ? h('span', { class: ['level', `level-${e.level.toLowerCase()}`] }, e.level.padStart(5))
          : null,
        opts.spans && st ? h('span', { class: 'spans' }, st) : null,
        opts.target && e.target ? h('span', { class: 'target' }, `${e.target}:`) : null,
        h('span', { class: 'msg' }, e.message),
        ft ? h('span', { class: 'fields' }, ft) : null,
      ]
        .filter(Boolean)
        .flatMap((p, i) => (i ? [' ', p] : [p]));
      const line = h(
        'div',
        {
          class: ['log-line', e.level && `level-${e.level.toLowerCase()}`],
          dataset: { n: String(e.n) },
        },
        parts,
      );
      line.hidden = !!hidden;
      const text = [e.ts, e.level, st, e.target && `${e.target}:`, e.message, ft]
        .filter(Boolean)
        .join(' ');
      return { ts: e.ts, ms: e.ms, el: line, text: text.toLowerCase(), hidden: !!hidden };
    });
    const shown = items.filter((i) => !i.hidden).length;
    replace(
      body,
      h(
        'div',
        { class: 'log-lines', id: 'log-lines-list' },
        items.map((i) => i.el),
      ),
      shown < items.length
        ? h(
            'p',
            { class: 'muted', id: 'log-hidden-note' },
            `${items.length - shown} of ${items.length} lines hidden by filters`,
          )
        : null,
    );
    markMatches(false);
  }

  function matches() {
    return items.filter((i) => !i.hidden && i.el.classList.contains('match'));
  }

  function markMatches(scroll) {
    const q = opts.query.trim().toLowerCase();
    for (const it of items)
      it.el.classList.toggle('match', !!q && !it.hidden && it.text.includes(q));
    const list = matches();
    if (list.length && opts.current < 0 && scroll) opts.current = 0;
    if (opts.current >= list.length) opts.current = list.length - 1;
    showCurrent(list, scroll);
  }

  function step(d) {
    const list = matches();
    if (!list.length) return;
    opts.current =
      ((opts.current < 0 ? (d > 0 ? -1 : 0) : opts.current) + d + list.length) % list.length;
    showCurrent(list, true);
  }

  function showCurrent(list, scroll) {
    for (const it of items) it.el.classList.remove('current');
    const counter = document.getElementById('log-search-count');
    if (counter)
      counter.textContent = opts.query.trim()
        ? `${list.length ? opts.current + 1 : 0}/${list.length}`
        : '';
    const cur = list[opts.current];
    if (cur) {
      cur.el.classList.add('current');
      if (scroll) cur.el.scrollIntoView({ block: 'center' });
    }
  }

  return {
    el,
    open,
    update() {
      renderSidebar();
      // A file that was empty (and so unlisted) when opened by a jump may be listed now.
      if (
        file &&
        !file.loaded &&
        entries().some((e) => e.path === file.entry.path && e.kind !== file.entry.kind)
      ) {
        open(file.entry.path, file.jump);
      }
    },
    show() {
      renderSidebar();
      if (!file) {
        const first = entries().find((e) => e.kind === 'lab_events') || entries()[0];
        if (first) open(first.path);
        else renderFile();
      } else if (file.loaded && !file.error) {
        schedulePoll(generation);
      }
    },
    hide() {
      clearTimeout(timer);
    },
    dispose() {
      generation += 1;
      clearTimeout(timer);
    },
  };
}
