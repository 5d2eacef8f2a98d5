// One HTTP/1.1 request over a plain TCP connection: the client's report (a
// POST) and its look at the version its server announces (a GET). fetch()
// starts its HTTP client on its first call in a process, a cost a cron run
// would pay every minute on every host; a bare request on Deno.connect
// starts nothing. Only what fanout's own health server answers is
// supported: http://, and an answer of bounded size (a longer one is an
// error, never read on).

import { deadline } from "../core/mod.ts";

/** The most of an answer to a report read, head and body. */
const MAX_POST_ANSWER = 64 * 1024;
/** Room for an answer's status line and headers besides the body {@linkcode getOnce} allows. */
const HEAD_ROOM = 4096;
const enc = new TextEncoder();

/** The answer to {@linkcode postOnce} or {@linkcode getOnce}. */
export interface PostAnswer {
  status: number;
  text: string;
}

/**
 * POSTs `body` to the `http://` URL `url` with `headers`, on a new
 * connection closed after the answer; gives up after `timeoutMs`.
 *
 * @throws {Error} named `TimeoutError` after `timeoutMs`; Deno's connection
 * errors (`ConnectionRefused`…); an Error for an answer that is not HTTP or
 * is over 64 KiB.
 *
 * @example
 * ```ts
 * const res = await postOnce("http://10.0.0.10:8874/report", { "content-type": "application/json" }, "{}", 2000);
 * res.status; // 202
 * ```
 */
export function postOnce(
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<PostAnswer> {
  return exchange("POST", url, headers, body, timeoutMs, MAX_POST_ANSWER);
}

/**
 * GETs the `http://` URL `url` on a new connection closed after the answer;
 * gives up after `timeoutMs`, and on an answer whose body is over `maxBody`
 * bytes (what came is dropped).
 *
 * @throws {Error} named `TimeoutError` after `timeoutMs`; Deno's connection
 * errors (`ConnectionRefused`…); an Error for an answer that is not HTTP or
 * is too long.
 *
 * @example
 * ```ts
 * const res = await getOnce("http://10.0.0.20:8874/version", 2000, 4160);
 * if (res.status === 200) JSON.parse(res.text).version;
 * ```
 */
export function getOnce(url: string, timeoutMs: number, maxBody: number): Promise<PostAnswer> {
  return exchange("GET", url, {}, "", timeoutMs, maxBody + HEAD_ROOM);
}

/** One request and its answer of at most `max` bytes (head and body). */
async function exchange(
  method: "GET" | "POST",
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
  max: number,
): Promise<PostAnswer> {
  const u = new URL(url);
  if (u.protocol !== "http:") throw new Error(`only http:// is supported, not ${u.protocol}`);
  const hostname = u.hostname.replace(/^\[|\]$/g, "");
  let conn: Deno.TcpConn | null = null;
  const dl = deadline(timeoutMs, () => {
    try {
      conn?.close();
    } catch { /* closed */ }
  });
  try {
    conn = await Deno.connect({ hostname, port: Number(u.port || 80), signal: dl.signal });
    if (dl.expired) throw timeout();
    const payload = enc.encode(body);
    const head = [
      `${method} ${u.pathname}${u.search} HTTP/1.1`,
      `Host: ${u.host}`,
      ...(method === "POST" ? [`Content-Length: ${payload.length}`] : []),
      "Connection: close",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ].join("\r\n");
    const req = new Uint8Array([...enc.encode(head), ...payload]);
    for (let off = 0; off < req.length;) off += await conn.write(req.subarray(off));
    const raw = await readAll(conn, max);
    return parseAnswer(raw);
  } catch (e) {
    if (dl.expired) throw timeout();
    throw e;
  } finally {
    dl.done();
    try {
      conn?.close();
    } catch { /* closed */ }
  }
}

function timeout(): Error {
  const e = new Error("timed out");
  e.name = "TimeoutError";
  return e;
}

/**
 * Reads the answer: until the server closes, or, with a Content-Length, until
 * the body is complete (a server or a proxy in between that keeps the
 * connection open despite `Connection: close` costs no timeout).
 *
 * @throws {Error} past `max` bytes.
 */
async function readAll(conn: Deno.Conn, max: number): Promise<Uint8Array> {
  let out = new Uint8Array(0);
  const buf = new Uint8Array(16 * 1024);
  let want = Infinity;
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    const next = new Uint8Array(out.length + n);
    next.set(out);
    next.set(buf.subarray(0, n), out.length);
    out = next;
    if (out.length > max) throw new Error(`an answer over ${max} bytes`);
    if (want === Infinity) want = expectedLength(out);
    if (out.length >= want) break;
  }
  return out;
}

/** Bytes of the whole answer once its head is in and says Content-Length; else Infinity. */
function expectedLength(raw: Uint8Array): number {
  const text = new TextDecoder().decode(raw);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return Infinity;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  if (!m) return Infinity;
  return new TextEncoder().encode(text.slice(0, end + 4)).length + Number(m[1]);
}

function parseAnswer(raw: Uint8Array): PostAnswer {
  const text = new TextDecoder().decode(raw);
  const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/.exec(text);
  const end = text.indexOf("\r\n\r\n");
  if (!m || end < 0) throw new Error("not an HTTP answer");
  const head = text.slice(0, end).toLowerCase();
  let body = text.slice(end + 4);
  if (/\r\ntransfer-encoding:\s*chunked/.test(head)) body = unchunk(body);
  return { status: Number(m[1]), text: body };
}

function unchunk(s: string): string {
  let out = "";
  let i = 0;
  for (;;) {
    const eol = s.indexOf("\r\n", i);
    if (eol < 0) break;
    const n = parseInt(s.slice(i, eol), 16);
    if (!(n > 0)) break;
    out += s.slice(eol + 2, eol + 2 + n);
    i = eol + 2 + n + 2;
  }
  return out;
}
