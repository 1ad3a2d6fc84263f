// Parsers for the log kinds the server lists (docs/serve.md "Log listing"): tracing JSON lines,
// ANSI text lines in tracing-subscriber's layout, JSON lines and qlog. Pure functions, shared by
// the Logs and Timeline tabs.

import { parseTs } from './format.js';

export const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

// Splits text into complete lines; a last line without newline is still being written.
export function splitLines(text) {
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

function fieldText(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function spanOf(obj) {
  const { name, ...fields } = obj || {};
  return { name: String(name ?? '?'), fields };
}

// One *.tracing.jsonl line (formats.md 4.2) -> a log entry.
export function parseTracingJson(line, n) {
  let o = null;
  try {
    o = JSON.parse(line);
  } catch {
    // not JSON: shown as a plain line below
  }
  if (!o || typeof o !== 'object') {
    return {
      n,
      raw: line,
      ts: null,
      ms: NaN,
      level: null,
      target: null,
      spans: [],
      message: line,
      fields: {},
    };
  }
  const { message, ...fields } = o.fields || {};
  let spans = [];
  if (Array.isArray(o.spans)) spans = o.spans.map(spanOf);
  else if (o.span) spans = [spanOf(o.span)];
  return {
    n,
    raw: line,
    ts: o.timestamp ?? null,
    ms: parseTs(o.timestamp),
    level: typeof o.level === 'string' ? o.level.toUpperCase() : null,
    target: o.target ?? null,
    spans,
    message: message === undefined ? '' : fieldText(message),
    fields,
  };
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
export const stripAnsi = (s) => s.replace(ANSI, '');

const HEAD = /^(\d{4}-\d\d-\d\dT\S+)\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(.*)$/;
// A span list: name{fields}:name2{fields} — the last span must have braces to tell it from a
// target (a span without fields is then read as part of the target; rare and harmless).
const SPANS = /^(?:[A-Za-z_][\w.-]*(?:\{[^}]*\})?:)*[A-Za-z_][\w.-]*\{[^}]*\}$/;
const TRAILING_KV = /\s([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|[^\s"=]+)$/;

function parseKvBody(body) {
  const out = {};
  const re = /([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S+)/g;
  let m;
  while ((m = re.exec(body))) out[m[1]] = unquote(m[2]);
  return out;
}

function unquote(v) {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
    try {
      return JSON.parse(v);
    } catch {
      return v.slice(1, -1);
    }
  }
  return v;
}

function parseSpans(text) {
  const spans = [];
  const re = /([A-Za-z_][\w.-]*)(?:\{([^}]*)\})?:?/g;
  let m;
  while ((m = re.exec(text)) && m[0])
    spans.push({ name: m[1], fields: m[2] ? parseKvBody(m[2]) : {} });
  return spans;
}

// One line of *.tracing.log or other text: `<ts> <LEVEL> <spans>: <target>: <message> k=v...`
// (formats.md 4.4). Lines that do not fit are kept whole as the message.
export function parseTextLine(line, n) {
  const plain = stripAnsi(line);
  const m = HEAD.exec(plain);
  if (!m)
    return {
      n,
      raw: plain,
      ts: null,
      ms: NaN,
      level: null,
      target: null,
      spans: [],
      message: plain,
      fields: {},
    };
  let rest = m[3];
  let spans = [];
  let target = null;
  const parts = rest.split(': ');
  if (parts.length >= 3 && SPANS.test(parts[0].replace(/:$/, ''))) {
    spans = parseSpans(parts[0]);
    target = parts[1];
    rest = parts.slice(2).join(': ');
  } else if (parts.length >= 2 && /^[\w.:-]+$/.test(parts[0])) {
    target = parts[0];
    rest = parts.slice(1).join(': ');
  } else if (rest.endsWith(':') && /^[\w.:-]+:$/.test(rest)) {
    target = rest.slice(0, -1);
    rest = '';
  }
  const fields = {};
  let k;
  // A leading space lets a message that is only fields (`path="direct" n=3`) parse too.
  rest = ` ${rest}`;
  while ((k = TRAILING_KV.exec(rest))) {
    fields[k[1]] = unquote(k[2]);
    rest = rest.slice(0, k.index);
  }
  rest = rest.slice(1);
  const ordered = Object.fromEntries(Object.entries(fields).reverse());
  return {
    n,
    raw: plain,
    ts: m[1],
    ms: parseTs(m[1]),
    level: m[2],
    target,
    spans,
    message: rest,
    fields: ordered,
  };
}

export function parseLogText(kind, text) {
  const lines = splitLines(text);
  if (kind === 'tracing_jsonl') {
    // A tracing_jsonl found by content may mix in non-JSON lines; keep them as text.
    return lines.map((l, i) =>
      l.trim().startsWith('{') ? parseTracingJson(l, i) : parseTextLine(l, i),
    );
  }
  return lines.map((l, i) => parseTextLine(l, i));
}

// JSON lines (lab_events, jsonl, and the events of a JSON-SEQ qlog).
export function parseJsonLines(text) {
  const out = [];
  for (const [i, raw] of splitLines(text).entries()) {
    const line = raw.replace(/^\x1e/, '').trim();
    if (!line) continue;
    try {
      out.push({ n: i, obj: JSON.parse(line), raw: line });
    } catch {
      out.push({ n: i, obj: null, raw: line });
    }
  }
  return out;
}

// `s1{z=3}:s2{y=2}:` as tracing-subscriber prints it.
export function spansText(spans) {
  if (!spans || !spans.length) return '';
  return (
    spans
      .map((sp) => {
        const kv = Object.entries(sp.fields || {}).map(([k, v]) => `${k}=${fieldText(v)}`);
        return kv.length ? `${sp.name}{${kv.join(' ')}}` : sp.name;
      })
      .join(':') + ':'
  );
}

export function fieldsText(fields) {
  return Object.entries(fields || {})
    .map(([k, v]) => `${k}=${fieldText(v)}`)
    .join(' ');
}

// qlog records in either container: JSON-SEQ (one event per line after a header) or a JSON
// document with traces[].events[] (objects, or the old [time, category, event, data] arrays).
export function parseQlog(text) {
  const trimmed = text.replace(/^\x1e/, '').trimStart();
  let events = [];
  let doc = null;
  if (trimmed.startsWith('{') && !trimmed.includes('\n\x1e') && splitLines(trimmed).length <= 2) {
    try {
      doc = JSON.parse(trimmed);
    } catch {
      doc = null;
    }
  }
  if (doc && Array.isArray(doc.traces)) {
    for (const t of doc.traces) for (const e of t.events || []) events.push(e);
  } else {
    for (const l of parseJsonLines(text)) {
      if (l.obj && (l.obj.qlog_version || l.obj.file_schema || l.obj.qlog_format)) continue;
      if (l.obj) events.push(l.obj);
    }
  }
  return events.map((e) => {
    if (Array.isArray(e)) return { time: Number(e[0]), name: `${e[1]}:${e[2]}`, data: e[3] || {} };
    return {
      time: Number(e.time),
      name: String(e.name ?? `${e.category}:${e.event}`),
      data: e.data || {},
    };
  });
}

export function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return out;
}

// Timeline rows from a text/ANSI log: lines whose target contains `_events::<Kind>`.
export function textEvents(text) {
  const out = [];
  for (const e of parseLogText('text', text)) {
    if (!e.target) continue;
    const i = e.target.indexOf('_events::');
    if (i < 0) continue;
    out.push({
      kind: e.target.slice(i + '_events::'.length),
      ts: e.ts,
      ms: e.ms,
      fields: e.fields,
    });
  }
  return out;
}
