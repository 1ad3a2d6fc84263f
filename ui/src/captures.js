// Captures tab: the run's packet captures (pcap/pcapng, listed by the server as kind `pcap`)
// with node, interface, size and a download link; opened with Wireshark or `tcpdump -r`.

import { h, replace } from './dom.js';
import { fileUrl, fileSize } from './api.js';
import { fmtBytes } from './format.js';

// `<kind>.<node>.<iface>.pcapng` -> iface; other names keep their base name.
export function captureIface(entry) {
  const base = entry.path.split('/').pop();
  let rest = base.replace(/\.(pcapng|pcap)$/, '');
  for (const k of ['device', 'router']) {
    const p = `${k}.${entry.node}.`;
    if (rest.startsWith(p)) return rest.slice(p.length);
  }
  return rest;
}

export function createCapturesView(ctx) {
  const sizes = new Map(); // path -> bytes, fetched once per listing
  const body = h('div', { class: 'captures-body' });
  const el = h('section', { class: 'view captures-view', id: 'view-captures' }, body);
  let visible = false;

  async function fetchSizes(list) {
    await Promise.all(
      list
        .filter((e) => !sizes.has(e.path))
        .map(async (e) => {
          sizes.set(e.path, await fileSize(ctx.run, e.path));
        }),
    );
  }

  function render() {
    const list = (ctx.logs() || []).filter((e) => e.kind === 'pcap');
    const recorded = Object.values(ctx.store.state.captures);
    replace(
      body,
      h(
        'p',
        { class: 'muted' },
        'Packet captures of this run. Open them with Wireshark, or ',
        h('code', null, 'unshare --user tcpdump -r FILE'),
        '.',
      ),
      list.length
        ? h(
            'table',
            { class: 'grid captures-table', id: 'captures-table' },
            h(
              'thead',
              null,
              h(
                'tr',
                null,
                ['node', 'interface', 'file', 'size', ''].map((t) => h('th', null, t)),
              ),
            ),
            h(
              'tbody',
              null,
              list.map((e) =>
                h(
                  'tr',
                  { dataset: { path: e.path } },
                  h('td', null, e.node),
                  h('td', null, captureIface(e)),
                  h('td', { class: 'mono' }, e.path),
                  h('td', { class: 'num' }, sizes.has(e.path) ? fmtBytes(sizes.get(e.path)) : '…'),
                  h(
                    'td',
                    null,
                    h(
                      'a',
                      {
                        class: 'download',
                        href: fileUrl(ctx.run, e.path),
                        download: e.path.split('/').pop(),
                      },
                      'download',
                    ),
                  ),
                ),
              ),
            ),
          )
        : h(
            'p',
            { id: 'captures-empty' },
            'no capture files in this run (always-on rings are written when a test fails).',
          ),
      recorded.length
        ? [
            h('h3', null, 'captures started by the test'),
            h(
              'table',
              { class: 'grid' },
              h(
                'thead',
                null,
                h(
                  'tr',
                  null,
                  ['node', 'interface', 'file', 'state'].map((t) => h('th', null, t)),
                ),
              ),
              h(
                'tbody',
                null,
                recorded.map((c) =>
                  h(
                    'tr',
                    null,
                    h('td', null, c.node),
                    h('td', null, c.iface),
                    h('td', { class: 'mono' }, c.file ?? '—'),
                    h('td', null, c.active ? 'capturing' : 'stopped'),
                  ),
                ),
              ),
            ),
          ]
        : null,
    );
  }

  async function refresh() {
    render();
    const list = (ctx.logs() || []).filter((e) => e.kind === 'pcap');
    // Sizes grow while a capture runs; re-read them each time the tab is shown.
    sizes.clear();
    await fetchSizes(list);
    if (visible) render();
  }

  return {
    el,
    update() {
      if (visible) render();
    },
    filesChanged() {
      if (visible) refresh();
    },
    show() {
      visible = true;
      return refresh();
    },
    hide() {
      visible = false;
    },
  };
}
