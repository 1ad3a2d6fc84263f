// The live lab state: a reducer over events.jsonl with the semantics of state.json
// (docs/artifacts.md, formats.md section 3), so the topology at any opid matches what the lab
// wrote. It reads our format (routers with `uplink`/`lan` objects) and normalises upstream's
// flat format into it, so upstream run directories render too. Unknown kinds are counted,
// never fatal: a newer library may add kinds.

export function emptyState() {
  return {
    opid: -1,
    status: '',
    label: null,
    lab_prefix: null,
    created_at: null,
    ix: null,
    routers: {}, // name -> router (our state.json shape, plus `devices`, `counters`)
    devices: {}, // name -> device
    regions: {}, // name -> {name, router}
    region_links: [], // {a, b, condition, broken}
    commands: {}, // pid -> {node, pid, cmd, exit_code, stdout, stderr}
    captures: {}, // "node/iface" -> {node, iface, file, active}
    user_events: {}, // node -> count
    unknown: {}, // kind -> count
    test_passed: null,
    extra: {}, // state.json keys the events do not carry (seed, link_backend, outdir)
  };
}

const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));

function normIx(ix) {
  if (!ix) return null;
  return {
    bridge: ix.bridge ?? null,
    cidr: ix.cidr ?? null,
    gateway: ix.gateway ?? ix.gw ?? null,
    cidr_v6: ix.cidr_v6 ?? null,
    gateway_v6: ix.gateway_v6 ?? ix.gw_v6 ?? null,
  };
}

// Router state in our shape. Upstream's flat keys (uplink_ip, downstream_cidr, ...) map onto
// the nested objects.
export function normRouter(r) {
  const out = clone(r) || {};
  if (!out.uplink) {
    out.uplink = {
      iface: null,
      ip: r.uplink_ip ?? null,
      ip_v6: r.uplink_ip_v6 ?? null,
      ll_v6: r.uplink_ll_v6 ?? null,
      link_condition: null,
    };
  }
  if (!out.lan) {
    out.lan = {
      iface: r.downstream_bridge ?? null,
      cidr: r.downstream_cidr ?? null,
      gateway: r.downstream_gw ?? null,
      cidr_v6: r.downstream_cidr_v6 ?? null,
      gateway_v6: r.downstream_gw_v6 ?? null,
      ll_v6: r.downstream_ll_v6 ?? null,
      downlink_condition: r.downlink_condition ?? null,
    };
  }
  out.upstream = out.upstream ?? null;
  out.region = out.region ?? null;
  out.counters = out.counters || {};
  out.nat_flushes = out.nat_flushes || 0;
  delete out.kind;
  delete out.opid;
  delete out.timestamp;
  delete out.devices; // recomputed from the devices' interfaces
  return out;
}

export function normDevice(d) {
  const out = clone(d) || {};
  out.default_iface = out.default_iface ?? out.default_via ?? null;
  out.interfaces = (out.interfaces || []).map((i) => ({ ...i, up: i.up ?? true }));
  out.counters = out.counters || {};
  delete out.kind;
  delete out.opid;
  delete out.timestamp;
  return out;
}

// Routers and devices are arrays in our state.json and name-keyed objects upstream.
function byName(coll, norm) {
  const out = {};
  if (Array.isArray(coll)) for (const x of coll) out[x.name] = norm(x);
  else for (const [name, x] of Object.entries(coll || {})) out[name] = norm({ name, ...x });
  return out;
}

// A whole state.json (or an initial_state payload) as reducer state.
export function fromStateJson(doc) {
  const st = emptyState();
  st.opid = typeof doc.opid === 'number' ? doc.opid : -1;
  st.status = doc.status ?? '';
  st.label = doc.label ?? null;
  st.lab_prefix = doc.lab_prefix ?? null;
  st.created_at = doc.created_at ?? null;
  st.ix = normIx(doc.ix);
  st.routers = byName(doc.routers, normRouter);
  st.devices = byName(doc.devices, normDevice);
  if (Array.isArray(doc.regions)) for (const r of doc.regions) st.regions[r.name] = { ...r };
  else for (const [name, r] of Object.entries(doc.regions || {})) st.regions[name] = { name, ...r };
  st.region_links = (doc.region_links || []).map((l) => ({
    a: l.a ?? l.router_a,
    b: l.b ?? l.router_b,
    condition: l.condition ?? null,
    broken: !!l.broken,
  }));
  for (const k of ['seed', 'link_backend', 'outdir']) if (k in doc) st.extra[k] = doc[k];
  return st;
}

// Which routers list a device: the ones its interfaces attach to (formats.md section 3).
export function routerDevices(st, routerName) {
  const out = [];
  for (const d of Object.values(st.devices)) {
    if (d.interfaces.some((i) => i.router === routerName)) out.push(d.name);
  }
  return out;
}

function iface(st, device, name) {
  const d = st.devices[device];
  return d ? d.interfaces.find((i) => i.name === name) : undefined;
}

function regionLink(st, a, b) {
  return st.region_links.find((l) => (l.a === a && l.b === b) || (l.a === b && l.b === a));
}

// Event kinds that change nothing drawn but are known (so they are not reported as unknown).
const NO_STATE_CHANGE = new Set(['link_condition_set', 'ip_added']);

// Applies one event in place. Returns true when the kind was understood.
export function applyEvent(st, ev) {
  const kind = ev.kind;
  if (typeof ev.opid === 'number') st.opid = ev.opid;
  const router = (name) => st.routers[name];
  switch (kind) {
    case 'lab_created':
      st.lab_prefix = ev.lab_prefix ?? null;
      st.label = ev.label ?? null;
      st.status = 'running';
      st.created_at = ev.timestamp ?? null;
      return true;
    case 'initial_state': {
      const next = fromStateJson(ev.state || {});
      const keepOpid = st.opid;
      Object.assign(st, next);
      st.opid = keepOpid;
      return true;
    }
    case 'ix_created':
      st.ix = normIx(ev);
      return true;
    case 'router_added':
    case 'region_router_added':
      st.routers[ev.name] = normRouter(ev);
      if (kind === 'region_router_added') st.routers[ev.name].region_router = true;
      return true;
    case 'router_removed':
      delete st.routers[ev.name];
      return true;
    case 'device_added':
      st.devices[ev.name] = normDevice(ev);
      return true;
    case 'device_removed':
      delete st.devices[ev.name];
      return true;
    case 'nat_changed':
      if (router(ev.router)) {
        // The event names the mode only; the detail string is refreshed from state.json.
        if (router(ev.router).nat !== ev.nat) router(ev.router).nat_config = undefined;
        router(ev.router).nat = ev.nat;
      }
      return true;
    case 'nat_v6_changed':
      if (router(ev.router)) router(ev.router).nat_v6 = ev.nat_v6;
      return true;
    case 'firewall_changed':
      if (router(ev.router)) {
        if (router(ev.router).firewall !== ev.firewall)
          router(ev.router).firewall_config = undefined;
        router(ev.router).firewall = ev.firewall;
      }
      return true;
    case 'pmtu_blackhole_changed':
      if (router(ev.router)) router(ev.router).block_icmp_frag_needed = !!ev.block;
      return true;
    case 'nat_state_flushed':
      if (router(ev.router)) router(ev.router).nat_flushes += 1;
      return true;
    case 'link_condition_changed': {
      const i = iface(st, ev.device, ev.iface);
      if (i) i.link_condition = ev.condition ?? null;
      return true;
    }
    case 'uplink_condition_changed':
      if (router(ev.router)) router(ev.router).uplink.link_condition = ev.condition ?? null;
      return true;
    case 'downlink_condition_changed':
      if (router(ev.router)) router(ev.router).lan.downlink_condition = ev.condition ?? null;
      return true;
    case 'link_up':
    case 'link_down': {
      const i = iface(st, ev.device, ev.iface);
      if (i) i.up = kind === 'link_up';
      return true;
    }
    case 'default_route_changed':
      if (st.devices[ev.device]) st.devices[ev.device].default_iface = ev.iface;
      return true;
    case 'interface_added': {
      const d = st.devices[ev.device];
      if (d && ev.iface && typeof ev.iface === 'object')
        d.interfaces.push({ ...ev.iface, up: ev.iface.up ?? true });
      return true;
    }
    case 'interface_removed': {
      const d = st.devices[ev.device];
      const name = ev.iface_name ?? ev.iface;
      if (d) d.interfaces = d.interfaces.filter((i) => i.name !== name);
      return true;
    }
    case 'interface_replugged': {
      const i = iface(st, ev.device, ev.iface_name);
      if (i) {
        i.router = ev.to_router;
        // Keep the prefix length our addresses carry; the event has the bare address.
        i.ip = withPrefix(ev.new_ip, st.routers[ev.to_router]?.lan?.cidr);
        i.ip_v6 = withPrefix(ev.new_ip_v6, st.routers[ev.to_router]?.lan?.cidr_v6);
      }
      return true;
    }
    case 'device_ip_changed': {
      const i = iface(st, ev.device, ev.iface_name);
      if (i) {
        if ('new_ip' in ev) i.ip = withPrefix(ev.new_ip, st.routers[i.router]?.lan?.cidr);
        if (ev.new_ip_v6 != null) {
          i.ip_v6 = withPrefix(ev.new_ip_v6, st.routers[i.router]?.lan?.cidr_v6);
        }
      }
      return true;
    }
    case 'region_added':
      st.regions[ev.name] = { name: ev.name, router: ev.router };
      return true;
    case 'region_link_added':
      st.region_links.push({
        a: ev.a ?? ev.router_a,
        b: ev.b ?? ev.router_b,
        condition: ev.condition ?? null,
        broken: false,
      });
      return true;
    case 'region_link_changed': {
      const l = regionLink(st, ev.a, ev.b);
      if (l) l.condition = ev.condition ?? null;
      return true;
    }
    case 'region_link_broken':
    case 'region_link_restored': {
      const l = regionLink(st, ev.a ?? ev.router_a, ev.b ?? ev.router_b);
      if (l) l.broken = kind === 'region_link_broken';
      return true;
    }
    case 'ra_changed':
      if (router(ev.router)) {
        router(ev.router).ra = {
          enabled: ev.enabled,
          interval_secs: ev.interval_secs,
          lifetime_secs: ev.lifetime_secs,
        };
      }
      return true;
    case 'command_spawned':
      st.commands[ev.pid] = {
        node: ev.node,
        pid: ev.pid,
        cmd: ev.cmd,
        stdout: ev.stdout ?? null,
        stderr: ev.stderr ?? null,
        exit_code: undefined,
      };
      return true;
    case 'command_exited':
      if (st.commands[ev.pid]) st.commands[ev.pid].exit_code = ev.exit_code;
      else st.commands[ev.pid] = { node: ev.node, pid: ev.pid, cmd: '?', exit_code: ev.exit_code };
      return true;
    case 'user_event':
      st.user_events[ev.node] = (st.user_events[ev.node] || 0) + 1;
      return true;
    case 'capture_started':
      st.captures[`${ev.node}/${ev.iface}`] = {
        node: ev.node,
        iface: ev.iface,
        file: ev.file ?? null,
        active: true,
      };
      return true;
    case 'capture_stopped': {
      const c = st.captures[`${ev.node}/${ev.iface}`];
      if (c) c.active = false;
      return true;
    }
    case 'packet_counters': {
      // Keyed by interface, as state.json's `counters`.
      const target = st.devices[ev.node] || st.routers[ev.node];
      if (target) for (const c of ev.counters || []) target.counters[c.iface] = { ...c };
      return true;
    }
    case 'test_completed':
      st.test_passed = !!ev.passed;
      return true;
    case 'lab_stopped':
      st.status = 'stopped';
      return true;
    default:
      if (NO_STATE_CHANGE.has(kind)) return true;
      st.unknown[kind] = (st.unknown[kind] || 0) + 1;
      return false;
  }
}

function withPrefix(addr, cidr) {
  if (addr === null || addr === undefined) return null;
  if (typeof addr !== 'string' || addr.includes('/')) return addr;
  const m = typeof cidr === 'string' ? /\/(\d+)$/.exec(cidr) : null;
  return m ? `${addr}/${m[1]}` : addr;
}

// Fills what the events do not carry (nat_config after a change, seed, link backend) from a
// state.json written at the same opid. A state.json of another opid is ignored: mixing two
// points in time would show a topology that never existed.
export function enrichFromStateJson(st, doc) {
  if (!doc || doc.opid !== st.opid) return false;
  const snap = fromStateJson(doc);
  for (const [name, r] of Object.entries(snap.routers)) {
    const mine = st.routers[name];
    if (!mine) continue;
    for (const k of ['nat_config', 'firewall_config', 'nptv6_prefix', 'pool', 'ip_support']) {
      if (k in r) mine[k] = r[k];
    }
  }
  Object.assign(st.extra, snap.extra);
  if (!st.status && snap.status) st.status = snap.status;
  return true;
}

// A store for one run: the state, every event seen (for the Events and Timeline tabs) and
// change listeners.
export class RunStore {
  constructor() {
    this.reset();
    this.listeners = new Set();
  }

  reset() {
    this.state = emptyState();
    this.events = [];
  }

  // A stream that starts over (the run was replaced) begins again at opid 0.
  push(ev) {
    if (!ev || typeof ev !== 'object' || typeof ev.kind !== 'string') return;
    if (typeof ev.opid === 'number' && ev.opid <= this.state.opid) {
      if (ev.opid !== 0) return; // a duplicate after a reconnect
      this.reset();
    }
    this.events.push(ev);
    applyEvent(this.state, ev);
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  notify() {
    for (const fn of this.listeners) fn(this);
  }
}
