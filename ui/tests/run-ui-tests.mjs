#!/usr/bin/env node
// Browser tests of the devtools UI: a real `patchbay serve`, a real failing lab run and a real
// headless Chromium, driven through playwright-core.
//
//   node ui/tests/run-ui-tests.mjs --patchbay build/tools/patchbay \
//       --example build/examples/patchbay_failing_example --screenshots out/ui-shots
//
// The page is opened before the run exists, so the run has to arrive through the page's own
// subscriptions. Each tab then gets a test on that run; each test saves a full-page screenshot.
// Exit codes: 0 all passed, 1 a test failed, 77 skipped (no /usr/bin/chromium or no
// ui/node_modules/playwright-core) unless PATCHBAY_REQUIRE_UI=1, which turns a skip into a failure.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { allKindsEvents, appendLines, writeInvocation, writeUpstreamLogs } from './fixtures.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const UI_DIR = path.resolve(HERE, '..');
const CHROMIUM = '/usr/bin/chromium';
const PLAYWRIGHT = path.join(UI_DIR, 'node_modules', 'playwright-core');
const SKIP = 77;
// How long a DOM condition may take: the server rescans runs every 2 s and polls event files
// every 500 ms, so 20 s is ample on a loaded 2-core machine.
const WAIT_MS = 20000;
const EXAMPLE_TIMEOUT_MS = 120000;

function parseArgs(argv) {
  const out = { screenshots: null, ui: UI_DIR };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const val = argv[i + 1];
    if (key === '--patchbay') out.patchbay = val;
    else if (key === '--example') out.example = val;
    else if (key === '--screenshots') out.screenshots = val;
    else if (key === '--ui') out.ui = val;
    else if (key === '--help' || key === '-h') {
      console.log(
        'usage: run-ui-tests.mjs --patchbay CLI --example FAILING_EXAMPLE [--screenshots DIR] [--ui DIR]',
      );
      process.exit(0);
    } else {
      console.error(`unknown argument ${key}`);
      process.exit(2);
    }
    i++;
  }
  for (const k of ['patchbay', 'example']) {
    if (!out[k]) {
      console.error(`missing --${k}`);
      process.exit(2);
    }
    out[k] = path.resolve(out[k]);
    if (!fs.existsSync(out[k])) {
      console.error(`--${k} ${out[k]} does not exist`);
      process.exit(1);
    }
  }
  return out;
}

function skipOrFail(reason) {
  if (process.env.PATCHBAY_REQUIRE_UI === '1') {
    console.error(
      `FAIL ui-tests: ${reason}, and PATCHBAY_REQUIRE_UI=1 requires the UI tests to run`,
    );
    process.exit(1);
  }
  console.log(`SKIP ui-tests: ${reason}`);
  process.exit(SKIP);
}

// --- child processes ---------------------------------------------------------------------------

// Starts `patchbay serve DIR --port 0` and resolves with {child, url} once the banner names the
// port.
function startServer(cli, dir, uiDir) {
  const child = spawn(cli, ['serve', dir, '--port', '0', '--ui', uiDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no banner from patchbay serve within ${WAIT_MS} ms:\n${output}`)),
      WAIT_MS,
    );
    const onData = (chunk) => {
      output += chunk;
      const m = /patchbay: serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], output: () => output });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`patchbay serve exited with ${code} before its banner:\n${output}`));
    });
  });
}

function runExample(bin, outdir) {
  const child = spawn(bin, [], {
    env: { ...process.env, PATCHBAY_OUTDIR: outdir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), EXAMPLE_TIMEOUT_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, output: `${output}\n${e.message}` });
    });
  });
  return { child, done };
}

// Stops a child we started: SIGTERM, then SIGKILL if it lingers.
async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

function findRunDirs(base, depth = 0) {
  const out = [];
  if (depth > 3) return out;
  if (fs.existsSync(path.join(base, 'events.jsonl'))) return [base];
  for (const e of fs.readdirSync(base, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...findRunDirs(path.join(base, e.name), depth + 1));
  }
  return out;
}

// --- assertions --------------------------------------------------------------------------------

class Failure extends Error {}

function expect(cond, msg) {
  if (!cond) throw new Failure(msg);
}

// Polls fn until it returns a truthy value; the last error or value is in the failure message.
async function waitUntil(fn, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline)
      throw new Failure(
        `timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

// --- main --------------------------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(CHROMIUM)) skipOrFail(`${CHROMIUM} is missing (apt-get install chromium)`);
  if (!fs.existsSync(path.join(PLAYWRIGHT, 'package.json'))) {
    skipOrFail(`${PLAYWRIGHT} is missing (run 'npm ci' in ${UI_DIR})`);
  }
  const { chromium } = await import(pathToFileURL(path.join(PLAYWRIGHT, 'index.mjs')).href);
  const shots = args.screenshots ? path.resolve(args.screenshots) : null;
  if (shots) fs.mkdirSync(shots, { recursive: true });

  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'patchbay-ui-'));
  let server = null;
  let browser = null;
  let example = null;
  const results = [];
  const pageErrors = [];

  const cleanup = async () => {
    if (browser) await browser.close().catch(() => {});
    browser = null;
    if (example) await stopChild(example.child);
    example = null;
    if (server) await stopChild(server.child);
    server = null;
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = async (sig) => {
    console.error(`interrupted by ${sig}; cleaning up`);
    await cleanup();
    process.exit(1);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let page;
  const ctx = {}; // shared between tests: run name, run dir
  async function test(name, fn) {
    const t0 = Date.now();
    try {
      await fn();
      results.push({ name, ok: true });
      console.log(`PASS ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      results.push({ name, ok: false });
      console.log(
        `FAIL ${name} (${Date.now() - t0} ms): ${e instanceof Failure ? e.message : e.stack}`,
      );
    }
    if (shots && page) {
      await page
        .screenshot({ path: path.join(shots, `${name}.png`), fullPage: true })
        .catch(() => {});
    }
  }
  // An extra screenshot in the middle of a test.
  const snap = async (name) => {
    if (shots && page)
      await page
        .screenshot({ path: path.join(shots, `${name}.png`), fullPage: true })
        .catch(() => {});
  };
  const skip = (name, why) => {
    results.push({ name, ok: true, skipped: true });
    console.log(`SKIP ${name}: ${why}`);
  };

  try {
    server = await startServer(args.patchbay, tmp, args.ui);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('response', (r) => {
      if (r.status() >= 400) pageErrors.push(`HTTP ${r.status()} for ${r.url()}`);
    });
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
    });
    const tab = async (t) => {
      await page.locator(`#tabs button[data-tab="${t}"]`).click();
      await page.locator(`#view-${t}`).waitFor();
    };

    await test('live-run-appears', async () => {
      await page.goto(server.url);
      expect((await page.title()) === 'patchbay', `title is '${await page.title()}'`);
      expect((await page.locator('h1').textContent()) === 'patchbay', 'heading is not patchbay');
      await page.locator('#no-runs').waitFor();
      example = runExample(args.example, tmp);
      // The example's result and run directory are needed by the later tests even when the
      // page fails here, so they are collected whatever happens in the page.
      const finished = example.done.then((r) => {
        example = null;
        const dirs = findRunDirs(tmp);
        if (dirs.length === 1) {
          ctx.runDir = dirs[0];
          ctx.run = path.relative(tmp, dirs[0]);
        }
        return { r, dirs };
      });
      try {
        // The run must arrive through /api/runs/subscribe: the page is never reloaded.
        await page
          .locator('#run-select option[value^="run:"]')
          .first()
          .waitFor({ state: 'attached' });
        for (const n of ['dc', 'isp', 'home', 'client', 'server']) {
          await page.locator(`#topology-graph g.node[data-node="${n}"]`).waitFor();
        }
        await waitUntil(
          async () => (await page.locator('#run-status').textContent()) === 'stopped',
          "status 'stopped'",
        );
      } finally {
        await finished;
      }
      const { r, dirs } = await finished;
      if (r.code !== 1) {
        console.log(r.output);
        throw new Failure(`the failing example exited with ${r.code ?? r.signal}, expected 1`);
      }
      expect(dirs.length === 1, `expected one run directory, found ${dirs.length}`);
      const lastOpid = JSON.parse(
        fs.readFileSync(path.join(ctx.runDir, 'state.json'), 'utf8'),
      ).opid;
      await waitUntil(
        async () => (await page.locator('#run-opid').textContent()) === `opid: ${lastOpid}`,
        `opid: ${lastOpid}`,
      );
      const label = await page
        .locator('#run-select')
        .evaluate((s) => s.selectedOptions[0]?.textContent);
      expect(
        label && label.includes('ServerSeesTheClientsOwnAddress'),
        `selected run label is '${label}'`,
      );
    });

    if (!ctx.run) throw new Failure('no run to test the tabs on');

    await test('topology', async () => {
      await tab('topology');
      for (const n of ['dc', 'isp', 'home'])
        await page.locator(`g.node-router[data-node="${n}"]`).waitFor();
      for (const n of ['client', 'server'])
        await page.locator(`g.node-device[data-node="${n}"]`).waitFor();
      const ix = await page.locator('g.node-ix .node-title').textContent();
      expect(/^IX \(\d+\.\d+\.\d+\.\d+\)$/.test(ix), `IX label '${ix}'`);
      const home = await page
        .locator('g.node-router[data-node="home"] .node-line')
        .first()
        .textContent();
      expect(home.includes('nat:home'), `home's second line is '${home}'`);
      await page.locator('g.node-router[data-node="home"]').click();
      await page.locator('#detail-panel').waitFor();
      const nat = await page.locator('#detail-panel tr[data-key="nat"] td').textContent();
      expect(nat === 'home', `panel nat is '${nat}'`);
      const up = await page.locator('#detail-panel tr[data-key="upstream"] td').textContent();
      expect(up === 'isp', `panel upstream is '${up}'`);
      // The client's link has 20 ms latency each way: the device panel shows both directions.
      await page.locator('g.node-device[data-node="client"]').click();
      const cond = await page.locator('#detail-panel table.ifaces tbody tr').first().textContent();
      expect(cond.includes('latency 20 ms'), `client's interface row is '${cond}'`);
    });

    await test('events', async () => {
      await tab('events');
      await page.locator('#events-table tr[data-kind="router_added"]').first().waitFor();
      const routers = await page.locator('#events-table tr[data-kind="router_added"]').count();
      const devices = await page.locator('#events-table tr[data-kind="device_added"]').count();
      expect(
        routers === 3 && devices === 2,
        `router_added rows ${routers}, device_added rows ${devices}`,
      );
      const first = await page.locator('#events-table tbody tr').first().getAttribute('data-opid');
      expect(first === '0', `first row opid ${first}`);
      await page.locator('#events-kind-filter').selectOption('device_added');
      await waitUntil(
        async () => (await page.locator('#events-table tbody tr').count()) === 2,
        'filter to 2 rows',
      );
      await page.locator('#events-time-toggle').click();
      const t = await page.locator('#events-table tbody tr td.time').first().textContent();
      expect(/^\d\d:\d\d:\d\d\.\d{3}$/.test(t), `absolute time '${t}'`);
      await page.locator('#events-kind-filter').selectOption('');
    });

    await test('logs', async () => {
      await tab('logs');
      await page.locator('#logs-sidebar a.log-file[data-path="events.jsonl"]').click();
      await page.locator('#jsonl-table tr[data-kind="router_added"]').first().waitFor();
      await page.locator('#jsonl-table tr[data-kind="device_added"]').first().waitFor();
      for (const n of ['client', 'server']) {
        await page
          .locator(`.log-group[data-node="${n}"] a.log-file[data-kind="tracing_jsonl"]`)
          .waitFor();
      }
      await page
        .locator('.log-group[data-node="client"] a.log-file[data-kind="tracing_jsonl"]')
        .click();
      await waitUntil(
        async () =>
          (await page.locator('#log-path').textContent()) === 'device.client.tracing.jsonl',
        'client tracing.jsonl open',
      );
      const lines = page.locator('#log-lines-list .log-line');
      await lines.first().waitFor();
      const total = await lines.count();
      const fileLines = fs
        .readFileSync(path.join(ctx.runDir, 'device.client.tracing.jsonl'), 'utf8')
        .trim()
        .split('\n').length;
      expect(total === fileLines, `${total} lines shown, file has ${fileLines}`);
      const first = lines.first();
      expect(
        /^\+\d+\.\d{3}s$/.test(await first.locator('.time').textContent()),
        'first line has no relative time',
      );
      expect(
        (await first.locator('.level.level-info').count()) === 1,
        'first line has no level-info level',
      );
      expect(
        (await first.locator('.target').textContent()) === 'patchbay:',
        'first line target is not patchbay:',
      );
      const targets = await page.locator('#log-target-filter option').allTextContents();
      expect(targets.includes('patchbay') && targets.includes('client'), `targets ${targets}`);
      // Target filter: only the user's own line (target = node name).
      await page.locator('#log-target-filter').selectOption('client');
      await waitUntil(
        async () => (await page.locator('#log-lines-list .log-line:visible').count()) === 1,
        'one client line',
      );
      expect(
        (await page.locator('#log-lines-list .log-line:visible .msg').textContent()).startsWith(
          'connected to ',
        ),
        'client line message',
      );
      await page.locator('#log-target-filter').selectOption('');
      // Level toggle: every line of this file is INFO, so hiding INFO hides them all.
      await page.locator('button.level-toggle[data-level="INFO"]').click();
      await waitUntil(
        async () => (await page.locator('#log-lines-list .log-line:visible').count()) === 0,
        'INFO lines hidden',
      );
      await page.locator('button.level-toggle[data-level="INFO"]').click();
      await waitUntil(
        async () => (await page.locator('#log-lines-list .log-line:visible').count()) === total,
        'INFO lines back',
      );
      // Search with counter and next.
      await page.locator('#log-search').fill('connected to');
      await waitUntil(
        async () => (await page.locator('#log-search-count').textContent()) === '1/1',
        'search counter 1/1',
      );
      await page.locator('#log-search').fill('eth0');
      const expectedMatches = fs
        .readFileSync(path.join(ctx.runDir, 'device.client.tracing.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .filter((l) => l.includes('eth0')).length;
      await waitUntil(
        async () =>
          (await page.locator('#log-search-count').textContent()) === `1/${expectedMatches}`,
        `search counter 1/${expectedMatches}`,
      );
      if (expectedMatches > 1) {
        await page.locator('#search-next').click();
        await waitUntil(
          async () =>
            (await page.locator('#log-search-count').textContent()) === `2/${expectedMatches}`,
          'next match',
        );
      }
      await page.locator('#log-search').fill('');
    });

    await test('timeline', async () => {
      await tab('timeline');
      const echo = page.locator('.tl-event[data-node="server"][data-kind="TcpEchoStarted"]');
      await echo.waitFor();
      await page
        .locator('.tl-event[data-node="client"][data-kind="TcpRoundtripComplete"]')
        .waitFor();
      await page.locator('.tl-event[data-node="_lab"][data-kind="router_added"]').first().waitFor();
      await snap('timeline-grid');
      await echo.click();
      const title = await page.locator('#timeline-detail-title').textContent();
      expect(title === 'server · TcpEchoStarted', `detail title '${title}'`);
      await page.locator('#jump-to-logs').click();
      await waitUntil(
        async () => (await page.locator('#tabs button.active').textContent()) === 'logs',
        'logs tab active',
      );
      await waitUntil(
        async () =>
          (await page.locator('#log-path').textContent()) === 'device.server.tracing.jsonl',
        'server tracing.jsonl open',
      );
      const jump = await page.locator('#log-jump').textContent();
      expect(jump.startsWith('jump: ') && !jump.includes('no line'), `jump note '${jump}'`);
      await page.locator('#log-lines-list .log-line.highlight').waitFor();
      expect(
        (await page.locator('#log-lines-list .log-line.highlight').count()) === 1,
        'exactly one highlighted line',
      );
      // The highlighted line is the nearest within 2 s: the server logs "listening" right after.
      const msg = await page.locator('#log-lines-list .log-line.highlight .msg').textContent();
      expect(msg.startsWith('listening on port'), `highlighted line '${msg}'`);
    });

    await test('captures', async () => {
      await tab('captures');
      const rows = page.locator('#captures-table tbody tr');
      await rows.first().waitFor();
      const onDisk = fs.readdirSync(ctx.runDir).filter((f) => /\.pcapng?$/.test(f));
      expect(
        onDisk.length > 0 && (await rows.count()) === onDisk.length,
        `${await rows.count()} rows, ${onDisk.length} files`,
      );
      const row = page.locator('#captures-table tr[data-path="device.client.eth0.pcapng"]');
      await row.waitFor();
      const cells = await row.locator('td').allTextContents();
      expect(cells[0] === 'client' && cells[1] === 'eth0', `row cells ${cells}`);
      await waitUntil(
        async () => !(await row.locator('td').nth(3).textContent()).includes('…'),
        'size shown',
      );
      const href = await row.locator('a.download').getAttribute('href');
      const magic = await page.evaluate(async (u) => {
        const r = await fetch(u);
        const b = new Uint8Array(await r.arrayBuffer());
        return [...b.slice(0, 4)].map((x) => x.toString(16).padStart(2, '0')).join('');
      }, href);
      expect(magic === '0a0d0d0a', `capture starts with ${magic}`);
    });

    const resultsFile = ['results.json', 'files/results.json']
      .map((p) => path.join(ctx.runDir, p))
      .find((p) => fs.existsSync(p));
    if (!resultsFile) {
      skip('perf', 'the run has no results.json');
    } else {
      await test('perf', async () => {
        await tab('perf');
        const heads = await page.locator('#perf-steps thead th').allTextContents();
        expect(heads.includes('Latency (ms)') && heads.includes('ID'), `headers ${heads}`);
        const ids = JSON.parse(fs.readFileSync(resultsFile, 'utf8')).steps.map((s) => s.id);
        const cells = await page.locator('#perf-steps tbody tr td:first-child').allTextContents();
        expect(JSON.stringify(cells) === JSON.stringify(ids), `step ids ${cells}, expected ${ids}`);
      });
    }

    await test('reducer-matches-state-json', async () => {
      // The page's live state after the last event equals what the lab wrote to state.json.
      const doc = JSON.parse(fs.readFileSync(path.join(ctx.runDir, 'state.json'), 'utf8'));
      const st = await page.evaluate(() => window.patchbayDebug.state());
      expect(
        st.opid === doc.opid && st.status === doc.status,
        `opid/status ${st.opid}/${st.status} vs ${doc.opid}/${doc.status}`,
      );
      // Key order is not part of the format: compare with sorted keys.
      const canon = (v) =>
        Array.isArray(v)
          ? v.map(canon)
          : v && typeof v === 'object'
            ? Object.fromEntries(
                Object.keys(v)
                  .sort()
                  .map((k) => [k, canon(v[k])]),
              )
            : v;
      const pick = (o, keys) => JSON.stringify(keys.map((k) => canon(o[k])));
      const rkeys = [
        'nat',
        'nat_config',
        'nat_v6',
        'firewall',
        'firewall_config',
        'ip_support',
        'upstream',
        'region',
        'mtu',
        'uplink',
        'lan',
      ];
      expect(
        JSON.stringify(Object.keys(st.routers).sort()) ===
          JSON.stringify(doc.routers.map((r) => r.name).sort()),
        'router names',
      );
      for (const r of doc.routers) {
        expect(
          pick(st.routers[r.name], rkeys) === pick(r, rkeys),
          `router ${r.name}: ${pick(st.routers[r.name], rkeys)} vs ${pick(r, rkeys)}`,
        );
      }
      expect(
        JSON.stringify(Object.keys(st.devices).sort()) ===
          JSON.stringify(doc.devices.map((d) => d.name).sort()),
        'device names',
      );
      for (const d of doc.devices) {
        const dkeys = ['default_iface', 'mtu', 'interfaces'];
        expect(
          pick(st.devices[d.name], dkeys) === pick(d, dkeys),
          `device ${d.name}: ${pick(st.devices[d.name], dkeys)} vs ${pick(d, dkeys)}`,
        );
      }
      expect(Object.keys(st.unknown).length === 0, `unknown kinds ${JSON.stringify(st.unknown)}`);
    });

    await test('all-kinds-live', async () => {
      // A run that grows while the page watches it, with every event kind the library emits.
      const dir = path.join(tmp, 'fixtures', 'all-kinds');
      fs.mkdirSync(dir, { recursive: true });
      const { first, second } = allKindsEvents(ctx.runDir);
      const file = path.join(dir, 'events.jsonl');
      appendLines(file, first);
      const opt = page.locator('#run-select option[value="run:fixtures/all-kinds"]');
      await opt.waitFor({ state: 'attached' });
      await page.locator('#run-select').selectOption('run:fixtures/all-kinds');
      await tab('topology');
      await waitUntil(
        async () => (await page.locator('#run-opid').textContent()) === `opid: ${first.length - 1}`,
        'first batch applied',
      );
      expect(
        (await page.locator('#run-status').textContent()) === 'running',
        'status running mid-run',
      );
      const edge = (from, to) => page.locator(`g.edge[data-from="${from}"][data-to="${to}"]`);
      await edge('router:home', 'device:phone').waitFor();
      await edge('router:region_eu', 'router:dc').waitFor();
      await page.locator('g.edge-region').waitFor();
      await snap('all-kinds-first-batch');
      // Policy and condition changes, still on home.
      const split = second.findIndex((l) => l.includes('"interface_replugged"'));
      appendLines(file, second.slice(0, split));
      await waitUntil(
        async () =>
          (await page.locator('g.node-router[data-node="home"] .node-line').textContent()) ===
          'nat:corporate fw:corporate',
        "home relabelled 'nat:corporate fw:corporate'",
      );
      await page.locator('g.node-router[data-node="home"]').click();
      const row = async (k) => page.locator(`#detail-panel tr[data-key="${k}"] td`).textContent();
      expect((await row('nat_v6')) === 'nptv6', `nat_v6 ${await row('nat_v6')}`);
      expect((await row('pmtu blackhole')) === 'yes', 'pmtu blackhole');
      expect((await row('nat flushes')) === '1', 'nat flushes');
      expect(
        (await row('uplink ingress')).includes('latency 40 ms') &&
          (await row('uplink egress')) === 'none',
        'uplink condition per direction',
      );
      expect((await row('downlink condition')) === 'lan', 'downlink condition');
      await page.locator('#detail-panel button.close').click();
      expect(
        await edge('router:home', 'device:phone').evaluate((e) =>
          e.classList.contains('edge-down'),
        ),
        'phone link down',
      );
      // Replug, region link changes, removals, an unknown kind, stop.
      appendLines(file, second.slice(split));
      const last = first.length + second.length - 1;
      await waitUntil(
        async () => (await page.locator('#run-opid').textContent()) === `opid: ${last}`,
        `opid: ${last}`,
      );
      await waitUntil(
        async () => (await page.locator('#run-status').textContent()) === 'stopped',
        'status stopped',
      );
      // The graph is redrawn on the next animation frame, possibly after the top bar.
      await waitUntil(
        async () => (await page.locator('g.node[data-node="home"]').count()) === 0,
        'home removed',
      );
      await waitUntil(
        async () => (await page.locator('g.node[data-node="srv"]').count()) === 0,
        'srv removed',
      );
      await edge('router:dc', 'device:phone').waitFor();
      const broken = page.locator('g.edge-region-broken');
      await broken.waitFor();
      expect((await broken.locator('text').textContent()) === 'broken', 'broken region link label');
      const footer = await page.locator('.unknown-kinds').textContent();
      expect(footer.includes('future_kind_xyz×1'), `unknown kinds footer '${footer}'`);
      const y = async (n) =>
        Number(await page.locator(`g.node[data-node="${n}"] rect`).getAttribute('y'));
      expect((await y('dc')) > (await y('region_eu')), 'dc drawn below its region router');
      await page.locator('g.node-device[data-node="phone"]').click();
      const cells = await page
        .locator('#detail-panel table.ifaces tbody tr')
        .first()
        .locator('td')
        .allTextContents();
      expect(
        cells[1] === 'dc' &&
          cells[2] === '198.18.1.77/24' &&
          cells[4] === 'down' &&
          cells[5] === 'wifi-bad' &&
          cells[6] === 'none',
        `phone interface row ${JSON.stringify(cells)}`,
      );
      await snap('all-kinds-final');
    });

    await test('upstream-logs', async () => {
      // Spans, fields and ANSI text as upstream's tracing writes them, on the all-kinds run.
      const dir = path.join(tmp, 'fixtures', 'all-kinds');
      writeUpstreamLogs(dir, 'phone');
      await tab('logs');
      const file = page.locator(
        '.log-group[data-node="phone"] a.log-file[data-path="device.phone.tracing.jsonl"]',
      );
      await file.waitFor();
      await file.click();
      const first = page.locator('#log-lines-list .log-line').first();
      await first.waitFor();
      const want = 's1{z=3}:s2{y=2}: e2e: foo x=1';
      expect(
        (await first.textContent()).includes(want),
        `jsonl line '${await first.textContent()}'`,
      );
      await page.locator('#toggle-spans').click();
      await waitUntil(
        async () => (await page.locator('#log-lines-list .spans').count()) === 0,
        'spans hidden',
      );
      await page.locator('#toggle-spans').click();
      await page.locator('#toggle-target').click();
      await waitUntil(
        async () => (await page.locator('#log-lines-list .target').count()) === 0,
        'targets hidden',
      );
      await page.locator('#toggle-target').click();
      await page.locator('button.level-toggle[data-level="WARN"]').click();
      await waitUntil(
        async () => (await page.locator('#log-lines-list .log-line:visible').count()) === 1,
        'WARN line hidden',
      );
      await page.locator('button.level-toggle[data-level="WARN"]').click();
      // ANSI text is not loaded until asked for, then parsed into the same parts.
      await page
        .locator('.log-group[data-node="phone"] a.log-file[data-path="device.phone.tracing.log"]')
        .click();
      await page.locator('#load-log').click();
      const ansi = page.locator('#log-lines-list .log-line').first();
      await ansi.waitFor();
      expect((await ansi.textContent()).includes(want), `ansi line '${await ansi.textContent()}'`);
      expect(!(await ansi.textContent()).includes('\x1b'), 'escape codes left in the line');
      await snap('upstream-logs');
      await tab('timeline');
      await page.locator('.tl-event[data-node="phone"][data-kind="PathValidated"]').waitFor();
    });

    await test('combined-perf', async () => {
      const sims = writeInvocation(tmp, 'inv-fixture', ctx.runDir);
      const opt = page.locator('#run-select option[value="inv:inv-fixture"]');
      await opt.waitFor({ state: 'attached' });
      expect(
        (await opt.textContent()) === `combined (${sims.length} sims)`,
        `option '${await opt.textContent()}'`,
      );
      await page.locator('#run-select').selectOption('inv:inv-fixture');
      await page.locator('#perf-summary').waitFor();
      const tabs = await page.locator('#tabs button').allTextContents();
      expect(JSON.stringify(tabs) === '["perf"]', `tabs ${tabs}`);
      const heads = await page.locator('#view-perf h3').allTextContents();
      expect(heads.includes('summary') && heads.includes('all steps'), `headings ${heads}`);
      const summary = await page.locator('#perf-summary tbody').textContent();
      for (const s of sims) expect(summary.includes(s.sim), `summary lacks ${s.sim}`);
      const allHeads = await page.locator('#perf-all-steps thead th').allTextContents();
      expect(
        allHeads.includes('Down MB/s') && allHeads.includes('Latency (ms)'),
        `all steps headers ${allHeads}`,
      );
      // 50 MB in 2 000 000 µs.
      expect(
        (await page.locator('#perf-all-steps tbody').textContent()).includes('25.00'),
        'iperf rate 25.00 MB/s',
      );
      await snap('combined-perf');
      // The Sim link selects that sim's run (upstream passed the sim name and selected nothing).
      await page.locator('#perf-all-steps a.sim-link', { hasText: 'iperf-nat' }).click();
      await waitUntil(
        async () =>
          (await page.locator('#run-select').inputValue()) === 'run:inv-fixture/iperf-nat',
        'iperf-nat run selected',
      );
      await page.locator('#perf-steps').waitFor();
      const ids = await page.locator('#perf-steps tbody td:first-child').allTextContents();
      expect(JSON.stringify(ids) === '["iperf"]', `steps ${ids}`);
    });

    await test('streams-closed', async () => {
      // Switching runs and tabs must not leak event streams: one for the run list, one for the
      // selected run.
      await page.locator('#run-select').selectOption(`run:${ctx.run}`);
      await tab('topology');
      const n = await page.evaluate(() => window.patchbayDebug.openStreams());
      expect(n === 2, `${n} event streams open`);
    });

    await test('no-page-errors', async () => {
      expect(pageErrors.length === 0, `page errors:\n${pageErrors.join('\n')}`);
    });
  } catch (e) {
    results.push({ name: 'setup', ok: false });
    console.log(`FAIL setup: ${e instanceof Failure ? e.message : e.stack}`);
  } finally {
    await cleanup();
  }
  const failed = results.filter((r) => !r.ok);
  console.log(
    `ui-tests: ${results.length - failed.length} passed, ${failed.length} failed in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  process.exit(failed.length ? 1 : 0);
}

main();
