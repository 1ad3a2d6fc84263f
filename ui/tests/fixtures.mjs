// Run directories written by the tests themselves, for what one failing LabTest does not
// produce: every event kind our labs emit (appended in two halves, to watch the page follow a
// live run) and a runner invocation with two sims and combined results. Payloads are taken from
// the real run's events, so the shapes are the library's.

import fs from 'node:fs';
import path from 'node:path';

function readEvents(runDir) {
  return fs
    .readFileSync(path.join(runDir, 'events.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

function ts(base, i) {
  // Events 10 ms apart, with nanosecond digits as the library writes them.
  const d = new Date(base + i * 10);
  return d.toISOString().replace(/\.(\d{3})Z$/, (_, ms) => `.${ms}123456Z`);
}

// The all-kinds scenario as two batches of events (opids continue across them).
export function allKindsEvents(realRunDir) {
  const real = readEvents(realRunDir);
  const router = (name) =>
    structuredClone(real.find((e) => e.kind === 'router_added' && e.name === name));
  const device = (name) =>
    structuredClone(real.find((e) => e.kind === 'device_added' && e.name === name));
  const strip = (e) => {
    delete e.opid;
    delete e.timestamp;
    delete e.kind;
    return e;
  };
  const regionRouter = (name, region) => ({ ...strip(router('dc')), name, region, upstream: null });
  const dc = { ...strip(router('dc')), region: 'eu', upstream: 'region_eu' };
  const home = { ...strip(router('home')), upstream: null };
  const phone = strip(device('client'));
  phone.name = 'phone';
  const srv = strip(device('server'));
  srv.name = 'srv';
  const limits = {
    rate_kbit: 0,
    loss_pct: 0,
    latency_ms: 40,
    jitter_ms: 0,
    reorder_pct: 0,
    duplicate_pct: 0,
    corrupt_pct: 0,
  };
  const first = [
    ['lab_created', { lab_prefix: 'lab9', label: 'all-kinds' }],
    [
      'ix_created',
      {
        bridge: 'br-ix',
        cidr: '198.18.0.0/24',
        gw: '198.18.0.1',
        cidr_v6: '2001:db8::/64',
        gw_v6: '2001:db8::1',
      },
    ],
    ['region_router_added', regionRouter('region_eu', 'eu')],
    ['region_added', { name: 'eu', router: 'region_eu' }],
    ['region_router_added', regionRouter('region_us', 'us')],
    ['region_added', { name: 'us', router: 'region_us' }],
    ['region_link_added', { a: 'eu', b: 'us', condition: limits }],
    ['router_added', dc],
    ['router_added', home],
    ['device_added', phone],
    ['device_added', srv],
  ];
  const second = [
    ['nat_changed', { router: 'home', nat: 'corporate' }],
    ['firewall_changed', { router: 'home', firewall: 'corporate' }],
    ['nat_v6_changed', { router: 'home', nat_v6: 'nptv6' }],
    ['pmtu_blackhole_changed', { router: 'home', block: true }],
    ['nat_state_flushed', { router: 'home' }],
    [
      'link_condition_changed',
      { device: 'phone', iface: 'eth0', condition: { egress: 'wifi-bad', ingress: null } },
    ],
    ['uplink_condition_changed', { router: 'home', condition: { egress: null, ingress: limits } }],
    ['downlink_condition_changed', { router: 'home', condition: 'lan' }],
    ['link_down', { device: 'phone', iface: 'eth0' }],
    ['link_up', { device: 'phone', iface: 'eth0' }],
    ['link_down', { device: 'phone', iface: 'eth0' }],
    ['default_route_changed', { device: 'phone', iface: 'eth0' }],
    [
      'interface_replugged',
      {
        device: 'phone',
        iface_name: 'eth0',
        from_router: 'home',
        to_router: 'dc',
        new_ip: '198.18.1.77',
        new_ip_v6: null,
      },
    ],
    ['region_link_changed', { a: 'eu', b: 'us', condition: { ...limits, latency_ms: 80 } }],
    ['region_link_broken', { a: 'us', b: 'eu' }],
    [
      'command_spawned',
      {
        node: 'phone',
        pid: 4242,
        cmd: 'true',
        stdout: 'device.phone.true.stdout.log',
        stderr: 'device.phone.true.stderr.log',
      },
    ],
    ['command_exited', { node: 'phone', pid: 4242, exit_code: 0 }],
    ['user_event', { node: 'phone', name: 'Roamed', fields: { to: 'dc' } }],
    ['capture_started', { node: 'phone', iface: 'eth0', file: '/tmp/phone.eth0.pcapng' }],
    ['capture_stopped', { node: 'phone', iface: 'eth0' }],
    ['router_removed', { name: 'home' }],
    ['device_removed', { name: 'srv' }],
    ['future_kind_xyz', { note: 'a kind this UI does not know' }],
    ['lab_stopped', {}],
  ];
  const base = Date.parse('2026-11-25T08:00:00Z');
  let opid = 0;
  const line = ([kind, payload]) =>
    JSON.stringify({ opid, timestamp: ts(base, opid++), kind, ...payload });
  return { first: first.map(line), second: second.map(line) };
}

export function appendLines(file, lines) {
  fs.appendFileSync(file, lines.map((l) => `${l}\n`).join(''));
}

// A runner-style invocation: two sims with results.json at the top of their directories and
// the invocation's combined-results.json.
export function writeInvocation(base, name, realRunDir) {
  const events = fs.readFileSync(path.join(realRunDir, 'events.jsonl'));
  const sims = [
    {
      dir: 'ping-direct',
      sim: 'ping-direct',
      steps: [{ id: 'ping', duration: null, up_bytes: null, down_bytes: null, latency_ms: '12.5' }],
    },
    {
      dir: 'iperf-nat',
      sim: 'iperf-nat',
      steps: [
        {
          id: 'iperf',
          duration: '2000000',
          up_bytes: null,
          down_bytes: '50000000',
          latency_ms: null,
        },
      ],
    },
  ];
  for (const s of sims) {
    const dir = path.join(base, name, s.dir);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'events.jsonl'), events);
    fs.writeFileSync(
      path.join(dir, 'results.json'),
      JSON.stringify({ sim: s.sim, steps: s.steps }, null, 2),
    );
  }
  const combined = {
    runs: sims.map((s) => ({ run: name, sim_dir: s.dir, sim: s.sim, steps: s.steps })),
  };
  fs.writeFileSync(
    path.join(base, name, 'combined-results.json'),
    JSON.stringify(combined, null, 2),
  );
  return sims;
}

// Upstream-style node logs (formats.md 4.2 and 4.4): nested spans with fields, key-value
// fields, and an `_events::` line that the timeline picks up from the ANSI text.
export function writeUpstreamLogs(dir, node) {
  const jsonl = [
    {
      fields: { message: 'foo', x: 1 },
      level: 'INFO',
      span: { name: 's2', y: 2 },
      spans: [
        { name: 's1', z: 3 },
        { name: 's2', y: 2 },
      ],
      target: 'e2e',
      timestamp: '2026-11-25T08:00:00.100000Z',
    },
    {
      fields: { message: 'slow path', rtt_ms: 41 },
      level: 'WARN',
      target: 'quicapp::conn',
      timestamp: '2026-11-25T08:00:00.200000Z',
    },
  ];
  fs.writeFileSync(
    path.join(dir, `device.${node}.tracing.jsonl`),
    jsonl.map((l) => `${JSON.stringify(l)}\n`).join(''),
  );
  const E = '\x1b';
  const text = [
    `${E}[2m2026-11-25T08:00:00.100000Z${E}[0m ${E}[32m INFO${E}[0m ${E}[1ms1${E}[0m${E}[1m{${E}[0mz=3${E}[1m}${E}[0m${E}[2m:${E}[0m${E}[1ms2${E}[0m${E}[1m{${E}[0my=2${E}[1m}${E}[0m${E}[2m:${E}[0m ${E}[2me2e${E}[0m${E}[2m:${E}[0m foo ${E}[3mx${E}[0m${E}[2m=${E}[0m1`,
    `${E}[2m2026-11-25T08:00:00.150000Z${E}[0m ${E}[32m INFO${E}[0m ${E}[2mapp_events::PathValidated${E}[0m${E}[2m:${E}[0m ${E}[3mpath${E}[0m${E}[2m=${E}[0m"direct"`,
  ];
  fs.writeFileSync(
    path.join(dir, `device.${node}.tracing.log`),
    text.map((l) => `${l}\n`).join(''),
  );
}
