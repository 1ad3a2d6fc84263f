// Talks to `patchbay serve` (docs/serve.md). Owns every EventSource the page opens so they can
// all be closed on unload: browsers allow about six connections per host, and leaked streams
// from earlier runs would starve the next page load.

const streams = new Set();

// Run names contain '/', sent as %2F in one path segment.
export const runSeg = (run) => encodeURIComponent(run);

// File paths keep their '/' (files/step1/content) but each segment is escaped.
export const pathSeg = (path) => path.split('/').map(encodeURIComponent).join('/');

export const fileUrl = (run, path) => `/api/runs/${runSeg(run)}/files/${pathSeg(path)}`;
export const logUrl = (run, path) => `/api/runs/${runSeg(run)}/logs/${pathSeg(path)}`;

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function check(res, url) {
  if (res.ok) return res;
  let msg = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) msg = body.error;
  } catch {
    // Not JSON; keep the status line.
  }
  throw new HttpError(res.status, `${url}: ${msg}`);
}

export async function getJson(url, opts = {}) {
  const res = await check(await fetch(url, { cache: 'no-store', ...opts }), url);
  return res.json();
}

export const listRuns = () => getJson('/api/runs');
export const getState = (run) => getJson(`/api/runs/${runSeg(run)}/state`);
export const listLogs = (run) => getJson(`/api/runs/${runSeg(run)}/logs`);
export const getCombined = (inv) =>
  getJson(`/api/invocations/${encodeURIComponent(inv)}/combined-results`);

// Files above this size are read from their end only (the server honours Range, serve.md).
export const TAIL_BYTES = 262144;

// Reads a text file, only its last TAIL_BYTES when it is bigger. Returns the text, the file's
// total size and whether the start was cut (then the first, partial line is dropped).
export async function readTail(run, path) {
  const url = fileUrl(run, path);
  const res = await fetch(url, { cache: 'no-store', headers: { Range: `bytes=-${TAIL_BYTES}` } });
  if (res.status === 416) return { text: '', size: 0, truncated: false };
  await check(res, url);
  let text = await res.text();
  let size = Number(res.headers.get('Content-Length')) || text.length;
  let truncated = false;
  const cr = res.headers.get('Content-Range');
  if (res.status === 206 && cr) {
    const m = /bytes (\d+)-(\d+)\/(\d+)/.exec(cr);
    if (m) {
      size = Number(m[3]);
      truncated = Number(m[1]) > 0;
    }
  }
  if (truncated) {
    const nl = text.indexOf('\n');
    text = nl >= 0 ? text.slice(nl + 1) : '';
  }
  return { text, size, truncated };
}

// Bytes appended since `offset` (tail polling of a live run).
export async function readAfter(run, path, offset) {
  const url = `${logUrl(run, path)}?after=${offset}`;
  const res = await check(await fetch(url, { cache: 'no-store' }), url);
  return res.text();
}

export async function fileSize(run, path) {
  const res = await fetch(fileUrl(run, path), { method: 'HEAD', cache: 'no-store' });
  if (!res.ok) return null;
  const n = res.headers.get('Content-Length');
  return n === null ? null : Number(n);
}

// An EventSource that is tracked for closeAll(). `onData` gets each message's parsed JSON (or
// the raw text when it is not JSON, like the run list's "update").
export function openStream(url, onData, onState) {
  const es = new EventSource(url);
  streams.add(es);
  es.onmessage = (m) => {
    let data = m.data;
    try {
      data = JSON.parse(m.data);
    } catch {
      // keep text
    }
    onData(data);
  };
  es.onopen = () => onState && onState('open');
  // EventSource reconnects by itself and resumes via Last-Event-ID; just report it.
  es.onerror = () => onState && onState(es.readyState === EventSource.CLOSED ? 'closed' : 'retry');
  return {
    close() {
      es.close();
      streams.delete(es);
    },
  };
}

export function openStreamCount() {
  return streams.size;
}

export function closeAllStreams() {
  for (const es of streams) es.close();
  streams.clear();
}

window.addEventListener('pagehide', closeAllStreams);
window.addEventListener('beforeunload', closeAllStreams);
