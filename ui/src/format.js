// Formatting shared by the views: timestamps (nanosecond RFC 3339 from events.jsonl, microsecond
// from tracing files), byte counts, link conditions and k=v details.

// Milliseconds since the epoch as a float that keeps the sub-millisecond digits, because
// Date.parse drops them and events of one lab are often microseconds apart.
export function parseTs(ts) {
  if (typeof ts !== 'string') return NaN;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$/.exec(ts.trim());
  if (!m) {
    const t = Date.parse(ts);
    return Number.isNaN(t) ? NaN : t;
  }
  const base = Date.parse(m[1] + (m[3] || 'Z'));
  if (Number.isNaN(base)) return NaN;
  const frac = m[2] ? Number('0.' + m[2]) * 1000 : 0;
  return base + frac;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

// HH:MM:SS.mmm in UTC: the files are in UTC, so the page matches what `grep` shows.
export function fmtAbs(ms) {
  if (!Number.isFinite(ms)) return '?';
  const d = new Date(Math.floor(ms));
  return (
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.` +
    pad(d.getUTCMilliseconds(), 3)
  );
}

export function fmtRel(ms, base) {
  if (!Number.isFinite(ms) || !Number.isFinite(base)) return '?';
  const d = (ms - base) / 1000;
  return (d < 0 ? '-' : '+') + Math.abs(d).toFixed(3) + 's';
}

export function fmtTime(ms, base, relative) {
  return relative ? fmtRel(ms, base) : fmtAbs(ms);
}

// Decimal units, as the perf tables and results.md use.
export function fmtBytes(n) {
  const v = Number(n);
  if (!Number.isFinite(v)) return n === null || n === undefined ? '' : String(n);
  if (v >= 1e9) return (v / 1e9).toFixed(2) + ' GB';
  if (v >= 1e6) return (v / 1e6).toFixed(2) + ' MB';
  if (v >= 1e3) return (v / 1e3).toFixed(1) + ' KB';
  return v + ' B';
}

export function valueText(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

const LIMIT_LABELS = {
  rate_kbit: ['rate', ' kbit/s'],
  loss_pct: ['loss', '%'],
  latency_ms: ['latency', ' ms'],
  jitter_ms: ['jitter', ' ms'],
  reorder_pct: ['reorder', '%'],
  duplicate_pct: ['dup', '%'],
  corrupt_pct: ['corrupt', '%'],
};

// One condition in any of the three spellings formats.md 2.6 allows: a preset name ("wifi-bad",
// "wifi_bad", "mobile_4g"), {"manual": limits} or a bare limits object.
export function fmtCondition(c) {
  if (c === null || c === undefined) return 'none';
  if (typeof c === 'string') return c;
  if (typeof c !== 'object') return String(c);
  const limits = c.manual && typeof c.manual === 'object' ? c.manual : c;
  const parts = [];
  for (const [k, v] of Object.entries(limits)) {
    if (v === 0 || v === null) continue;
    const [label, unit] = LIMIT_LABELS[k] || [k, ''];
    parts.push(`${label} ${v}${unit}`);
  }
  return parts.length ? parts.join(', ') : 'unimpaired';
}

// Our events carry {egress, ingress}; upstream's carry one condition for both directions.
export function splitConditions(c) {
  if (c && typeof c === 'object' && ('egress' in c || 'ingress' in c)) {
    return { egress: c.egress ?? null, ingress: c.ingress ?? null };
  }
  return { egress: c ?? null, ingress: c ?? null };
}

export function fmtConditions(c) {
  const { egress, ingress } = splitConditions(c);
  if (egress === null && ingress === null) return 'none';
  const e = fmtCondition(egress);
  const i = fmtCondition(ingress);
  return e === i ? `both: ${e}` : `egress: ${e} · ingress: ${i}`;
}

export function isImpaired(c) {
  const { egress, ingress } = splitConditions(c);
  return egress !== null || ingress !== null;
}

// "k=v" pairs for a details column; strings unquoted, everything else as JSON.
export function kvPairs(obj, skip = []) {
  const out = [];
  for (const [k, v] of Object.entries(obj || {})) {
    if (skip.includes(k)) continue;
    out.push([k, typeof v === 'string' ? v : JSON.stringify(v)]);
  }
  return out;
}

export function stripPrefixLen(addr) {
  return typeof addr === 'string' ? addr.replace(/\/\d+$/, '') : addr;
}
