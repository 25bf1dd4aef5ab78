/**
 * The daemon's local API: HTTP/1.1 with JSON bodies on a unix socket (the Docker/containerd
 * convention), over the DaemonControl surface (src/daemon/control.ts). This file is the only
 * place that knows HTTP; the daemon never sees a request.
 *
 *   GET    /v1/status              DaemonStatus
 *   GET    /v1/connections         { connections: ConnectionStatus[] }
 *   GET    /v1/connections/NAME    ConnectionStatus                        404 ERR_API_NOT_FOUND
 *   PUT    /v1/connections/NAME    body { local: { interface }, vxlan: { vni, remote, port?, ttl? }, name? }
 *                                  → 201 (created, Location) | 200 (replaced): ConnectionStatus
 *                                  If-None-Match: * → create only: 412 ERR_API_EXISTS when NAME exists
 *   DELETE /v1/connections/NAME    → 204                                   404 ERR_API_NOT_FOUND
 *   GET    /v1/neighbours          { neighbours: NeighbourStatus[] }
 * Errors: `{ "error": { code, message, field?, errors? } }`, statuses in errors.ts.
 *
 * Who may talk to it: whoever can connect to the socket. Access is the file system's: the socket's
 * directory must be ours and 0700 (created so when missing; refused when it exists with looser
 * permissions or another owner), the socket is 0600 — bound under umask 0177, so it is never
 * reachable with wider permissions, not even for a moment. A socket file left by a crashed daemon
 * is replaced only when nothing answers on it (connect → ECONNREFUSED).
 *
 * A slow or hostile client cannot hold the daemon: request headers must arrive within
 * headersTimeoutMs (5 s), a body within bodyTimeoutMs (10 s) (408 ERR_API_TIMEOUT); a body larger
 * than maxBodyBytes (64 KiB) is refused by its Content-Length before it is read, or as soon as a
 * chunked body passes the limit (413), and the connection is closed so nothing more is read.
 * Every response is serialised first and written with one `end()` and a Content-Length, so
 * responses on concurrent connections never interleave; requests pipelined on one connection are
 * handled one after the other. Changes from different connections are serialised by the control
 * itself (a change during another waits there, or gets ERR_API_BUSY during a reload).
 */
import { lstat, mkdir, chmod, stat, unlink } from 'node:fs/promises';
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

import type { DaemonControl } from '../daemon/control.ts';
import { PinholeError } from '../sys/index.ts';
import { apiError, errorResponse } from './errors.ts';

export const API_MAX_BODY_BYTES = 64 * 1024;
export const API_HEADERS_TIMEOUT_MS = 5_000;
export const API_BODY_TIMEOUT_MS = 10_000;
/** Requests one connection may have waiting (pipelined) before it is closed. */
export const API_MAX_PIPELINED = 32;
/** How long close() lets requests in flight finish before it cuts their connections. */
export const API_CLOSE_GRACE_MS = 2_000;

export type ApiLog = (event: Record<string, unknown>) => void;

export interface ApiServerOptions {
  /** Path of the unix socket (e.g. /run/pinhole/api.sock). */
  socket: string;
  /** Structured log: every change request (method, path, status, ms), internal errors with their stack. */
  log?: ApiLog;
  maxBodyBytes?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  closeGraceMs?: number;
}

export interface ApiServer {
  /** The socket's absolute path. */
  readonly socket: string;
  /** Stops accepting, lets requests in flight finish (up to the grace period), removes the socket file. */
  close(): Promise<void>;
}

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface RequestContext {
  req: IncomingMessage;
  name: string;
  control: DaemonControl;
  readJson: () => Promise<unknown>;
}

type Handler = (ctx: RequestContext) => Reply | Promise<Reply>;

interface Route {
  /** Path segments after /v1; ':name' matches one non-empty segment. */
  segments: string[];
  methods: Record<string, Handler>;
}

function findConnection(control: DaemonControl, name: string) {
  const c = control.connections().find((x) => x.name === name);
  if (!c) throw apiError('ERR_API_NOT_FOUND', `no connection named '${name}'`);
  return c;
}

const ROUTES: Route[] = [
  { segments: ['status'], methods: { GET: ({ control }) => ({ status: 200, body: control.status() }) } },
  {
    segments: ['connections'],
    methods: { GET: ({ control }) => ({ status: 200, body: { connections: control.connections() } }) },
  },
  {
    segments: ['connections', ':name'],
    methods: {
      GET: ({ control, name }) => ({ status: 200, body: findConnection(control, name) }),
      PUT: async ({ req, control, name, readJson }) => {
        const ifAbsent = createOnly(req);
        // The control validates the body (a name in it must equal the path's) and applies it;
        // with If-None-Match: * it refuses an existing name (in turn with the other changes).
        const r = await control.putConnection(name, await readJson(), ifAbsent ? { ifAbsent } : undefined);
        return r.created
          ? { status: 201, body: r.connection, headers: { Location: `/v1/connections/${encodeURIComponent(name)}` } }
          : { status: 200, body: r.connection };
      },
      DELETE: async ({ control, name }) => {
        await control.deleteConnection(name);
        return { status: 204 };
      },
    },
  },
  { segments: ['neighbours'], methods: { GET: ({ control }) => ({ status: 200, body: { neighbours: control.neighbours() } }) } },
];

/** The route and handler for a request, or the error to answer with (404, 405 with Allow). */
function route(method: string, pathname: string): { handler: Handler; name: string } {
  const parts = pathname.split('/');
  // '/v1/status' → ['', 'v1', 'status']
  if (parts.length < 3 || parts[0] !== '' || parts[1] !== 'v1') throw noRoute(pathname);
  const rest = parts.slice(2);
  for (const r of ROUTES) {
    if (r.segments.length !== rest.length) continue;
    let name = '';
    let ok = true;
    for (let i = 0; i < rest.length && ok; i++) {
      const want = r.segments[i]!;
      const got = rest[i]!;
      if (want === ':name') {
        if (got === '') ok = false;
        else {
          try {
            name = decodeURIComponent(got);
          } catch {
            throw apiError('ERR_API_BAD_REQUEST', `bad percent-encoding in path segment '${got}'`);
          }
        }
      } else if (want !== got) ok = false;
    }
    if (!ok) continue;
    const handler = Object.hasOwn(r.methods, method) ? r.methods[method] : undefined;
    if (!handler) {
      const allow = Object.keys(r.methods).join(', ');
      throw apiError('ERR_API_METHOD', `${method} is not allowed on ${pathname} (allowed: ${allow})`, { allow });
    }
    return { handler, name };
  }
  throw noRoute(pathname);
}

function noRoute(pathname: string): PinholeError {
  return apiError(
    'ERR_API_NO_ROUTE',
    `no such path ${pathname} (paths: /v1/status, /v1/connections, /v1/connections/NAME, /v1/neighbours)`,
  );
}

/**
 * `If-None-Match: *` on a PUT: create only (RFC 9110 13.1.2). We have no entity tags, so any
 * other value is refused rather than silently ignored.
 */
function createOnly(req: IncomingMessage): boolean {
  const v = req.headers['if-none-match'];
  if (v === undefined) return false;
  if (v.trim() === '*') return true;
  throw apiError('ERR_API_BAD_REQUEST', `If-None-Match: only '*' (create, never replace) is supported, got ${JSON.stringify(v)}`);
}

/** Whether the request announces a body (one we may have to refuse before reading it). */
function announcesBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

/** `application/json`, optionally with `charset=utf-8` (any case); nothing else. */
function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const [type, ...params] = value.split(';').map((s) => s.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((p) => p === '' || p === 'charset=utf-8' || p === 'charset="utf-8"');
}

/**
 * Reads the request body, at most `max` bytes, within `timeoutMs`. Refuses by Content-Length
 * before reading; stops reading (pauses the request) the moment a chunked body passes `max`.
 */
function readBody(req: IncomingMessage, max: number, timeoutMs: number): Promise<Buffer> {
  const cl = req.headers['content-length'];
  if (cl === undefined && req.headers['transfer-encoding'] === undefined) {
    return Promise.reject(apiError('ERR_API_LENGTH_REQUIRED', 'a request body is required: send Content-Length (or a chunked body)'));
  }
  if (cl !== undefined && Number(cl) > max) {
    return Promise.reject(apiError('ERR_API_BODY_TOO_LARGE', `request body of ${cl} bytes is larger than the limit of ${max} bytes`));
  }
  return new Promise<Buffer>((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (err: Error | undefined, value?: Buffer): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) {
        req.pause();
        reject(err);
      } else resolveBody(value!);
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > max) {
        chunks.length = 0;
        done(apiError('ERR_API_BODY_TOO_LARGE', `request body is larger than the limit of ${max} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => done(undefined, Buffer.concat(chunks, total));
    const onError = (err: Error): void => done(apiError('ERR_API_BAD_REQUEST', `reading the request body: ${err.message}`));
    const onAborted = (): void => done(apiError('ERR_API_BAD_REQUEST', 'the client went away while sending the body'));
    const timer = setTimeout(() => done(apiError('ERR_API_TIMEOUT', `request body not received within ${timeoutMs} ms`)), timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseJson(buf: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(buf);
  } catch {
    throw apiError('ERR_API_BAD_JSON', 'request body is not valid UTF-8');
  }
  if (text.trim() === '') throw apiError('ERR_API_BAD_JSON', 'request body is empty: expected a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw apiError('ERR_API_BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** JSON with bigint as numbers when safe, strings otherwise (counters may be bigint). */
function serialise(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? (x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString()) : x));
}

/** A connection to the socket answers (live), is refused (stale file), or the file is gone. */
function probeSocket(path: string): Promise<'live' | 'stale' | 'gone'> {
  return new Promise((resolveProbe) => {
    const s: Socket = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolveProbe('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.destroy();
      // EAGAIN: a full backlog is a live listener too.
      resolveProbe(err.code === 'ECONNREFUSED' ? 'stale' : err.code === 'ENOENT' ? 'gone' : 'live');
    });
  });
}

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Checks (or creates) the socket directory and clears a stale socket file. */
async function prepareSocketPath(path: string): Promise<void> {
  const dir = dirname(path);
  const euid = process.geteuid?.() ?? 0;
  let st = await lstatOrNull(dir);
  if (!st) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    st = await lstat(dir);
  }
  if (st.isSymbolicLink()) {
    throw new PinholeError('ERR_API_SOCKET_DIR', `API socket directory ${dir} is a symbolic link: refusing it (name the real directory)`);
  }
  if (!st.isDirectory()) throw new PinholeError('ERR_API_SOCKET_DIR', `API socket directory ${dir} is not a directory`);
  if (st.uid !== euid) {
    throw new PinholeError(
      'ERR_API_SOCKET_DIR',
      `API socket directory ${dir} is owned by uid ${st.uid}, not by this process (uid ${euid}): another user could replace the socket; use a directory of ours`,
      { details: { dir, uid: st.uid } },
    );
  }
  const mode = st.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new PinholeError(
      'ERR_API_SOCKET_DIR',
      `API socket directory ${dir} has mode ${mode.toString(8).padStart(4, '0')}: other users could reach the API; it must be 0700 (chmod 700 ${dir}, or let pinhole create a new directory)`,
      { details: { dir, mode } },
    );
  }

  const sock = await lstatOrNull(path);
  if (!sock) return;
  if (!sock.isSocket()) {
    throw new PinholeError('ERR_API_SOCKET_PATH', `${path} exists and is not a socket: refusing to replace it`, { details: { path } });
  }
  const state = await probeSocket(path);
  if (state === 'live') {
    throw new PinholeError(
      'ERR_API_SOCKET_IN_USE',
      `another process answers on ${path} (a pinhole daemon already running?): stop it or use another socket path`,
      { details: { path } },
    );
  }
  if (state === 'stale') {
    try {
      await unlink(path); // left by a daemon that did not stop cleanly
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/** Binds the listener under umask 0177: the socket file is born 0600. bind() runs inside listen(). */
function listenPrivately(server: ReturnType<typeof createServer>, path: string): Promise<void> {
  return new Promise((resolveListen, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') {
        reject(new PinholeError('ERR_API_SOCKET_IN_USE', `${path} appeared while starting (another daemon starting?)`, { cause: err }));
      } else reject(new PinholeError('ERR_API_SOCKET', `listen on ${path}: ${err.code ?? err.message}`, { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolveListen();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    const old = process.umask(0o177);
    try {
      server.listen({ path, backlog: 64 });
    } finally {
      process.umask(old);
    }
  });
}

/** Starts the API on `opts.socket`. Throws ERR_API_SOCKET_DIR / ERR_API_SOCKET_PATH / ERR_API_SOCKET_IN_USE / ERR_API_SOCKET. */
export async function startApiServer(control: DaemonControl, opts: ApiServerOptions): Promise<ApiServer> {
  const path = resolve(opts.socket);
  const userLog = opts.log;
  // A failing logger must not take a request (or the daemon) down with it.
  const log: ApiLog = (e) => {
    try {
      userLog?.(e);
    } catch {
      /* ignored */
    }
  };
  const maxBody = opts.maxBodyBytes ?? API_MAX_BODY_BYTES;
  const headersTimeout = opts.headersTimeoutMs ?? API_HEADERS_TIMEOUT_MS;
  const bodyTimeout = opts.bodyTimeoutMs ?? API_BODY_TIMEOUT_MS;
  const grace = opts.closeGraceMs ?? API_CLOSE_GRACE_MS;

  await prepareSocketPath(path);

  let closing = false;
  const inFlight = new Set<ServerResponse>();
  const lastOnSocket = new WeakMap<Socket, Promise<void>>();
  const pipelined = new WeakMap<Socket, number>();

  const send = (req: IncomingMessage, res: ServerResponse, reply: Reply): void => {
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string | number> = { ...reply.headers };
    let payload: Buffer | undefined;
    if (reply.status !== 204) {
      payload = Buffer.from(serialise(reply.body ?? {}) + '\n');
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = payload.length;
    }
    // A body we did not read (refused, too large, too slow) is not read later either: close.
    const abandon = announcesBody(req) && !req.complete;
    if (abandon || closing) headers.Connection = 'close';
    res.writeHead(reply.status, headers);
    if (abandon) res.once('finish', () => req.socket.destroy());
    res.end(payload);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const method = req.method ?? 'GET';
    let pathname = req.url ?? '/';
    let status = 0;
    let code: string | undefined;
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    try {
      let handler: Handler;
      let name: string;
      try {
        pathname = new URL(req.url ?? '/', 'http://pinhole').pathname;
      } catch {
        throw apiError('ERR_API_BAD_REQUEST', `cannot parse the request target ${JSON.stringify(req.url)}`);
      }
      ({ handler, name } = route(method, pathname));
      const readJson = async (): Promise<unknown> => {
        if (!isJsonContentType(req.headers['content-type'])) {
          const got = req.headers['content-type'];
          throw apiError(
            'ERR_API_CONTENT_TYPE',
            `the body must be JSON with Content-Type: application/json (got ${got === undefined ? 'none' : JSON.stringify(got)})`,
          );
        }
        return parseJson(await readBody(req, maxBody, bodyTimeout));
      };
      const reply = await handler({ req, name, control, readJson });
      status = reply.status;
      send(req, res, reply);
    } catch (err) {
      const r = errorResponse(err);
      status = r.status;
      code = r.body.error.code;
      const headers: Record<string, string> = {};
      const details = err instanceof PinholeError ? err.details : undefined;
      if (code === 'ERR_API_METHOD' && typeof details?.allow === 'string') headers.Allow = details.allow;
      if (code === 'ERR_API_BUSY') headers['Retry-After'] = '1';
      if (r.internal) {
        log({
          level: 'error',
          event: 'api-internal-error',
          method,
          path: pathname,
          message: (err as Error)?.message,
          stack: (err as Error)?.stack,
        });
      }
      send(req, res, { status: r.status, body: r.body, headers });
    } finally {
      const ms = Math.round((performance.now() - started) * 1000) / 1000;
      const entry: Record<string, unknown> = {
        level: method === 'GET' || method === 'HEAD' ? 'debug' : 'info',
        event: 'api-request',
        method,
        path: pathname,
        status,
        ms,
      };
      if (code) entry.code = code;
      log(entry);
    }
  };

  const server = createServer(
    {
      headersTimeout,
      // Node's own ceiling on receiving a whole request; ours (bodyTimeout) fires first.
      requestTimeout: headersTimeout + bodyTimeout + 1_000,
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))),
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
      requireHostHeader: false,
    },
    (req, res) => {
      // Pipelined requests on one connection run one after the other, so a GET after a PUT
      // sees it (RFC 9112 9.3.2); Node already sends their answers in order.
      // More waiting than any real client pipelines is a client flooding us: cut it off.
      const depth = (pipelined.get(req.socket) ?? 0) + 1;
      if (depth > API_MAX_PIPELINED) {
        log({ level: 'warn', event: 'api-client-error', reason: `more than ${API_MAX_PIPELINED} pipelined requests` });
        req.socket.destroy();
        return;
      }
      pipelined.set(req.socket, depth);
      const prev = lastOnSocket.get(req.socket);
      const run = (): Promise<void> =>
        handle(req, res)
          .catch(() => void res.destroy())
          .finally(() => pipelined.set(req.socket, (pipelined.get(req.socket) ?? 1) - 1));
      const done = prev ? prev.then(run) : run();
      lastOnSocket.set(req.socket, done);
    },
  );
  server.maxConnections = 256;

  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // A request on this connection is being answered: writing a raw response would mix with it.
    const answering = (socket as Socket & { _httpMessage?: unknown })._httpMessage != null;
    if (err.code === 'ECONNRESET' || !socket.writable || answering) {
      socket.destroy();
      return;
    }
    const [status, apiCode, message] =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'ERR_API_TIMEOUT', `request headers not received within ${headersTimeout} ms`]
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'ERR_API_HEADERS_TOO_LARGE', 'request headers are too large']
          : [400, 'ERR_API_BAD_REQUEST', `malformed HTTP request (${err.code ?? err.message})`];
    const body = Buffer.from(serialise({ error: { code: apiCode, message } }) + '\n');
    log({ level: 'info', event: 'api-client-error', status, code: apiCode, reason: err.code ?? err.message });
    socket.once('finish', () => socket.destroy());
    socket.end(
      Buffer.concat([
        Buffer.from(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        ),
        body,
      ]),
    );
  });

  await listenPrivately(server, path);
  await chmod(path, 0o600); // already so (umask); stated for the reader
  const ino = (await stat(path)).ino;
  log({ level: 'info', event: 'api-listening', socket: path });

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      const stopped = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      if (inFlight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        const waited = new Promise<void>((r) => (timer = setTimeout(r, grace)));
        await Promise.race([stopped, waited, allDone(inFlight)]);
        clearTimeout(timer);
      }
      server.closeAllConnections();
      await stopped;
      // Remove the file only if it is still ours (never another daemon's socket).
      try {
        if ((await stat(path)).ino === ino) await unlink(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      log({ level: 'info', event: 'api-closed', socket: path });
    })();
    return closed;
  };

  return { socket: path, close };
}

/** Resolves once every response in the set has closed. */
function allDone(responses: Set<ServerResponse>): Promise<void> {
  return Promise.all([...responses].map((r) => (r.closed ? undefined : new Promise<void>((ok) => r.once('close', () => ok()))))).then(
    () => undefined,
  );
}
