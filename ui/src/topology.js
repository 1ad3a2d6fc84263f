// Topology tab: lays the lab out as a top-to-bottom tree (IX at the top, routers below their
// upstream, devices below the router of their default interface) and draws it as SVG. The
// layout is our own so the page needs no graph library; labs are small, so a simple subtree-
// width layout is enough. Clicking a node opens a detail panel.

import { h, s, replace, throttleFrame } from './dom.js';
import {
  fmtConditions,
  splitConditions,
  fmtCondition,
  isImpaired,
  stripPrefixLen,
  valueText,
} from './format.js';
import { routerDevices } from './state.js';

const NODE_W = 190;
const GAP_X = 26;
const LEVEL_H = 140;
const TOP = 60;
const LINE_H = 15;

function nodeId(kind, name) {
  return `${kind}:${name}`;
}

// Builds the tree and positions: returns {nodes: Map id -> node, edges: [...]}.
export function layout(st) {
  const nodes = new Map();
  const children = new Map();
  const add = (n) => {
    nodes.set(n.id, n);
    children.set(n.id, []);
  };
  add({ id: 'ix', kind: 'ix', name: 'IX', lines: [] });
  for (const r of Object.values(st.routers)) {
    const second = [
      `nat:${r.nat ?? '?'}` + (r.firewall && r.firewall !== 'none' ? ` fw:${r.firewall}` : ''),
    ];
    add({
      id: nodeId('router', r.name),
      kind: 'router',
      name: r.name,
      title: r.region ? `${r.name} [${r.region}]` : r.name,
      lines: second,
      data: r,
    });
  }
  for (const d of Object.values(st.devices)) {
    const v4 = d.interfaces.map((i) => stripPrefixLen(i.ip)).filter(Boolean);
    add({
      id: nodeId('device', d.name),
      kind: 'device',
      name: d.name,
      title: d.name,
      lines: v4,
      data: d,
    });
  }

  const edges = [];
  const parentOf = new Map();
  // Routers: under their upstream; an upstream cycle or a removed parent falls back to the IX.
  for (const r of Object.values(st.routers)) {
    const up = r.upstream && st.routers[r.upstream] ? nodeId('router', r.upstream) : 'ix';
    parentOf.set(nodeId('router', r.name), up);
  }
  const depthCache = new Map();
  const routerDepth = (id, seen = new Set()) => {
    if (id === 'ix') return 0;
    if (depthCache.has(id)) return depthCache.get(id);
    if (seen.has(id)) {
      parentOf.set(id, 'ix');
      return 1;
    }
    seen.add(id);
    const d = routerDepth(parentOf.get(id), seen) + 1;
    depthCache.set(id, d);
    return d;
  };
  for (const r of Object.values(st.routers)) routerDepth(nodeId('router', r.name));
  for (const r of Object.values(st.routers)) {
    const id = nodeId('router', r.name);
    const up = parentOf.get(id);
    children.get(up).push(id);
    edges.push({
      from: up,
      to: id,
      label: r.uplink?.iface || '',
      kind: 'uplink',
      impaired: isImpaired(r.uplink?.link_condition),
    });
  }
  // Devices: under the router of the default interface; other interfaces get extra edges.
  for (const d of Object.values(st.devices)) {
    const id = nodeId('device', d.name);
    const main = d.interfaces.find((i) => i.name === d.default_iface) || d.interfaces[0];
    const parent = main && st.routers[main.router] ? nodeId('router', main.router) : 'ix';
    parentOf.set(id, parent);
    children.get(parent).push(id);
    for (const i of d.interfaces) {
      const r = st.routers[i.router] ? nodeId('router', i.router) : null;
      if (!r) continue;
      edges.push({
        from: r,
        to: id,
        label: i.name,
        kind: r === parent && i === main ? 'lan' : 'lan-extra',
        down: i.up === false,
        impaired: isImpaired(i.link_condition),
      });
    }
  }

  // Subtree widths, then x positions left to right in creation order.
  const width = new Map();
  const measure = (id) => {
    const kids = children.get(id);
    const own = NODE_W;
    const sum = kids.reduce((acc, k) => acc + measure(k) + GAP_X, -GAP_X);
    const w = Math.max(own, kids.length ? sum : own);
    width.set(id, w);
    return w;
  };
  measure('ix');
  const place = (id, x0, depth) => {
    const n = nodes.get(id);
    const w = width.get(id);
    n.x = x0 + w / 2;
    n.y = TOP + depth * LEVEL_H;
    n.depth = depth;
    let x = x0 + (w - childrenWidth(id)) / 2;
    for (const k of children.get(id)) {
      place(k, x, depth + 1);
      x += width.get(k) + GAP_X;
    }
  };
  const childrenWidth = (id) =>
    children.get(id).reduce((acc, k) => acc + width.get(k) + GAP_X, -GAP_X);
  place('ix', 20, 0);

  // Region links join the regions' routers.
  for (const l of st.region_links) {
    const ra = st.regions[l.a]?.router ?? `region_${l.a}`;
    const rb = st.regions[l.b]?.router ?? `region_${l.b}`;
    const a = nodeId('router', ra);
    const b = nodeId('router', rb);
    if (nodes.has(a) && nodes.has(b)) {
      edges.push({
        from: a,
        to: b,
        kind: l.broken ? 'region-broken' : 'region',
        label: l.broken ? 'broken' : fmtCondition(l.condition),
        link: l,
      });
    }
  }
  let maxX = 0;
  let maxY = 0;
  for (const n of nodes.values()) {
    n.h = n.kind === 'ix' ? 72 : 26 + Math.max(1, n.lines.length) * LINE_H;
    maxX = Math.max(maxX, n.x + NODE_W / 2);
    maxY = Math.max(maxY, n.y + n.h);
  }
  return { nodes, edges, width: maxX + 20, height: maxY + 40 };
}

function edgePath(a, b) {
  const x1 = a.x;
  const y1 = a.y + a.h;
  const x2 = b.x;
  const y2 = b.y;
  const my = (y1 + y2) / 2;
  return { d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`, mx: (x1 + x2) / 2, my };
}

function regionPath(a, b) {
  // An arc above both routers so it does not run through the tree's vertical edges.
  const y = Math.min(a.y, b.y) - 26;
  return {
    d: `M${a.x},${a.y} Q${(a.x + b.x) / 2},${y - 30} ${b.x},${b.y}`,
    mx: (a.x + b.x) / 2,
    my: y - 14,
  };
}

function renderSvg(lay, selected, onSelect) {
  const defs = s(
    'defs',
    null,
    s(
      'marker',
      {
        id: 'arrow',
        viewBox: '0 0 10 10',
        refX: '9',
        refY: '5',
        markerWidth: '7',
        markerHeight: '7',
        orient: 'auto-start-reverse',
      },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }),
    ),
  );
  const edgeEls = [];
  for (const e of lay.edges) {
    const a = lay.nodes.get(e.from);
    const b = lay.nodes.get(e.to);
    if (!a || !b) continue;
    const region = e.kind.startsWith('region');
    const p = region ? regionPath(a, b) : edgePath(a, b);
    const cls = ['edge', `edge-${e.kind}`, e.down && 'edge-down', e.impaired && 'edge-impaired'];
    edgeEls.push(
      s(
        'g',
        { class: cls.filter(Boolean).join(' '), 'data-from': e.from, 'data-to': e.to },
        s('path', { d: p.d, 'marker-end': e.kind === 'uplink' ? 'url(#arrow)' : null }),
        e.label
          ? s(
              'text',
              { x: p.mx + 4, y: p.my, class: 'edge-label' },
              e.label + (e.down ? ' (down)' : ''),
            )
          : null,
      ),
    );
  }
  const nodeEls = [];
  for (const n of lay.nodes.values()) {
    const cls = ['node', `node-${n.kind}`, selected === n.id && 'selected'];
    const g = s('g', {
      class: cls.filter(Boolean).join(' '),
      'data-node': n.name,
      'data-kind': n.kind,
      tabindex: '0',
      role: 'button',
      on: {
        click: () => onSelect(n.id),
        keydown: (ev) => (ev.key === 'Enter' || ev.key === ' ') && onSelect(n.id),
      },
    });
    if (n.kind === 'ix') {
      // An ellipse, so the gateway address fits inside the IX's round shape.
      g.appendChild(s('ellipse', { cx: n.x, cy: n.y + 36, rx: 84, ry: 34 }));
      g.appendChild(
        s(
          'text',
          { x: n.x, y: n.y + 40, class: 'node-title', 'text-anchor': 'middle' },
          n.label || 'IX',
        ),
      );
    } else {
      g.appendChild(
        s('rect', {
          x: n.x - NODE_W / 2,
          y: n.y,
          width: NODE_W,
          height: n.h,
          rx: n.kind === 'router' ? 4 : 10,
        }),
      );
      g.appendChild(
        s('text', { x: n.x, y: n.y + 17, class: 'node-title', 'text-anchor': 'middle' }, n.title),
      );
      n.lines.forEach((line, i) =>
        g.appendChild(
          s(
            'text',
            { x: n.x, y: n.y + 17 + (i + 1) * LINE_H, class: 'node-line', 'text-anchor': 'middle' },
            line,
          ),
        ),
      );
    }
    nodeEls.push(g);
  }
  return s(
    'svg',
    {
      class: 'topology-svg',
      width: lay.width,
      height: lay.height,
      viewBox: `0 0 ${lay.width} ${lay.height}`,
      role: 'img',
      'aria-label': 'lab topology',
    },
    defs,
    s('g', { class: 'edges' }, edgeEls),
    s('g', { class: 'nodes' }, nodeEls),
  );
}

function kvTable(rows) {
  return h(
    'table',
    { class: 'kv' },
    h(
      'tbody',
      null,
      rows
        .filter(Boolean)
        .map(([k, v]) =>
          h(
            'tr',
            { dataset: { key: k } },
            h('th', null, k),
            h('td', null, v instanceof Node ? v : valueText(v)),
          ),
        ),
    ),
  );
}

function conditionRows(prefix, c) {
  const { egress, ingress } = splitConditions(c);
  return [
    [`${prefix} egress`, fmtCondition(egress)],
    [`${prefix} ingress`, fmtCondition(ingress)],
  ];
}

function countersTable(counters) {
  const rows = Object.entries(counters || {});
  if (!rows.length) return null;
  return h(
    'table',
    { class: 'grid counters' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['iface', 'rx bytes', 'tx bytes', 'rx pkts', 'tx pkts'].map((t) => h('th', null, t)),
      ),
    ),
    h(
      'tbody',
      null,
      rows.map(([name, c]) =>
        h(
          'tr',
          null,
          h('td', null, c.iface ?? name),
          h('td', null, valueText(c.rx_bytes)),
          h('td', null, valueText(c.tx_bytes)),
          h('td', null, valueText(c.rx_packets)),
          h('td', null, valueText(c.tx_packets)),
        ),
      ),
    ),
  );
}

function commandsOf(st, node) {
  const cmds = Object.values(st.commands).filter((c) => c.node === node);
  if (!cmds.length) return null;
  return h(
    'table',
    { class: 'grid commands' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['pid', 'command', 'exit'].map((t) => h('th', null, t)),
      ),
    ),
    h(
      'tbody',
      null,
      cmds.map((c) =>
        h(
          'tr',
          null,
          h('td', null, String(c.pid)),
          h('td', { class: 'mono' }, c.cmd ?? '?'),
          h('td', null, c.exit_code === undefined ? 'running' : valueText(c.exit_code)),
        ),
      ),
    ),
  );
}

function detail(st, id) {
  if (id === 'ix') {
    const ix = st.ix || {};
    return [
      h('h3', null, 'IX'),
      kvTable([
        ['bridge', ix.bridge],
        ['cidr', ix.cidr],
        ['gw', ix.gateway],
        ['cidr_v6', ix.cidr_v6],
        ['gw_v6', ix.gateway_v6],
      ]),
    ];
  }
  const [kind, name] = [id.slice(0, id.indexOf(':')), id.slice(id.indexOf(':') + 1)];
  if (kind === 'router') {
    const r = st.routers[name];
    if (!r) return [h('p', { class: 'muted' }, `router ${name} was removed`)];
    return [
      h('h3', null, `router ${name}`),
      kvTable([
        ['id', r.id ?? r.ns],
        ['region', r.region],
        ['nat', r.nat],
        r.nat_config !== undefined
          ? ['nat config', r.nat_config]
          : ['nat config', '(changed, waiting for state.json)'],
        ['nat_v6', r.nat_v6],
        r.nptv6_prefix ? ['nptv6 prefix', r.nptv6_prefix] : null,
        ['firewall', r.firewall],
        r.firewall_config !== undefined ? ['firewall config', r.firewall_config] : null,
        r.block_icmp_frag_needed !== undefined
          ? ['pmtu blackhole', r.block_icmp_frag_needed ? 'yes' : 'no']
          : null,
        r.nat_flushes ? ['nat flushes', String(r.nat_flushes)] : null,
        ['ip_support', r.ip_support],
        r.pool !== undefined ? ['pool', r.pool] : null,
        ['mtu', r.mtu],
        ['upstream', r.upstream ?? 'IX'],
        ['uplink iface', r.uplink.iface],
        ['uplink ip', r.uplink.ip],
        ['uplink ip_v6', r.uplink.ip_v6],
        ['uplink ll_v6', r.uplink.ll_v6],
        ...conditionRows('uplink', r.uplink.link_condition),
        ['lan cidr', r.lan.cidr],
        ['lan gw', r.lan.gateway],
        ['lan cidr_v6', r.lan.cidr_v6],
        ['lan gw_v6', r.lan.gateway_v6],
        ['lan bridge', r.lan.iface],
        ['downlink condition', fmtCondition(r.lan.downlink_condition)],
        r.ra ? ['router adverts', JSON.stringify(r.ra)] : null,
        ['devices', routerDevices(st, name).join(', ') || '—'],
      ]),
      countersTable(r.counters),
      commandsOf(st, name),
    ];
  }
  const d = st.devices[name];
  if (!d) return [h('p', { class: 'muted' }, `device ${name} was removed`)];
  return [
    h('h3', null, `device ${name}`),
    kvTable([
      ['id', d.id ?? d.ns],
      ['default iface', d.default_iface],
      ['mtu', d.mtu],
      st.user_events[name] ? ['user events', String(st.user_events[name])] : null,
    ]),
    h(
      'table',
      { class: 'grid ifaces' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ['name', 'router', 'ip', 'ip_v6', 'up', 'egress', 'ingress'].map((t) => h('th', null, t)),
        ),
      ),
      h(
        'tbody',
        null,
        d.interfaces.map((i) => {
          const c = splitConditions(i.link_condition);
          return h(
            'tr',
            null,
            h('td', null, i.name),
            h('td', null, valueText(i.router)),
            h('td', null, valueText(i.ip)),
            h('td', null, valueText(i.ip_v6)),
            h('td', null, i.up === false ? 'down' : 'up'),
            h('td', null, fmtCondition(c.egress)),
            h('td', null, fmtCondition(c.ingress)),
          );
        }),
      ),
    ),
    countersTable(d.counters),
    commandsOf(st, name),
  ];
}

export function createTopologyView(ctx) {
  let selected = null;
  const graph = h('div', { class: 'topology-graph', id: 'topology-graph' });
  const panel = h('aside', { class: 'detail-panel', id: 'detail-panel', hidden: true });
  const footer = h('div', { class: 'topology-footer' });
  const el = h(
    'section',
    { class: 'view topology-view', id: 'view-topology' },
    h('div', { class: 'topology-main' }, graph, footer),
    panel,
  );

  const select = (id) => {
    selected = selected === id ? null : id;
    render();
  };

  const render = () => {
    const st = ctx.store.state;
    const lay = layout(st);
    const ix = lay.nodes.get('ix');
    ix.label = st.ix?.gateway ? `IX (${st.ix.gateway})` : 'IX';
    replace(graph, renderSvg(lay, selected, select));
    if (selected && selected !== 'ix' && !lay.nodes.has(selected)) {
      // The node went away; keep the panel so the removal is visible.
    }
    panel.hidden = !selected;
    if (selected) {
      replace(
        panel,
        h('button', { class: 'close', title: 'close', on: { click: () => select(selected) } }, '×'),
        detail(st, selected),
      );
    }
    const unknown = Object.entries(st.unknown);
    replace(
      footer,
      h(
        'span',
        null,
        `opid ${st.opid} · ${Object.keys(st.routers).length} routers · ${Object.keys(st.devices).length} devices`,
      ),
      st.region_links.length ? h('span', null, ` · ${st.region_links.length} region links`) : null,
      unknown.length
        ? h(
            'div',
            { class: 'unknown-kinds' },
            'event kinds not understood (ignored): ',
            unknown.map(([k, n]) => h('code', null, `${k}×${n}`)),
          )
        : null,
    );
  };
  const update = throttleFrame(render);
  return { el, update, show: render, hide() {} };
}
