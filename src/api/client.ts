/**
 * Client of the daemon's local API (server.ts): one HTTP/1.1 request per call over the unix
 * socket, JSON in and out. `apiRequest` returns whatever the daemon answered; `ApiClient`'s typed
 * methods turn an error answer into a PinholeError carrying the daemon's code (ERR_API_NOT_FOUND,
 * ERR_CONFIG_INVALID with details.field, ...), so the CLI prints `pinhole: CODE: message`.
 *
 * Connection failures get their own codes, so "no daemon" never reads like a daemon's refusal:
 *   ERR_API_NO_DAEMON     nothing listens on the socket (ENOENT, ECONNREFUSED: a stale file)
 *   ERR_API_PERMISSION    the socket or its directory is not ours (EACCES, EPERM): root only
 *   ERR_API_TIMEOUT       connected, but no complete answer within timeoutMs
 *   ERR_API_CONNECTION    anything else on the way (reset, ...)
 *   ERR_API_BAD_RESPONSE  the answer is not the JSON the API promises
 */
import { request, type IncomingHttpHeaders } from 'node:http';

import type { ConnectionStatus, DaemonStatus, NeighbourStatus } from '../daemon/control.ts';
import { PinholeError } from '../sys/index.ts';
import type { ApiErrorBody } from './errors.ts';

export const DEFAULT_API_SOCKET = '/run/pinhole/api.sock';
export const API_CLIENT_TIMEOUT_MS = 30_000;
/** Largest answer we accept (a status with many connections is a few hundred KiB at most). */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

export interface ApiResponse<T = unknown> {
  status: number;
  /** The parsed JSON body; undefined for an empty one (204). */
  body: T;
  headers: IncomingHttpHeaders;
}

export interface ApiRequestOptions {
  timeoutMs?: number;
  /** Extra or replacing request headers (tests: another Content-Type). */
  headers?: Record<string, string>;
}

/**
 * One request. `body`: a value to send as JSON, or a string/Buffer sent as it is (still labelled
 * application/json unless `opts.headers` says otherwise).
 */
export function apiRequest<T = unknown>(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  opts: ApiRequestOptions = {},
): Promise<ApiResponse<T>> {
  const timeoutMs = opts.timeoutMs ?? API_CLIENT_TIMEOUT_MS;
  const payload =
    body === undefined
      ? undefined
      : typeof body === 'string' || Buffer.isBuffer(body)
        ? Buffer.from(body)
        : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = { Accept: 'application/json' };
  if (payload) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = payload.length;
  }
  Object.assign(headers, opts.headers);

  return new Promise<ApiResponse<T>>((resolveResponse, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = request({ socketPath: socket, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let total = 0;
      res.on('data', (c: Buffer) => {
        total += c.length;
        if (total > MAX_RESPONSE_BYTES)
          fail(new PinholeError('ERR_API_BAD_RESPONSE', `answer from ${socket} is larger than ${MAX_RESPONSE_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('error', (err) => fail(connectionError(socket, err)));
      res.on('end', () => {
        if (settled) return;
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        if (text.trim() !== '') {
          try {
            parsed = JSON.parse(text);
          } catch {
            fail(
              new PinholeError('ERR_API_BAD_RESPONSE', `answer from ${socket} (HTTP ${res.statusCode}) is not JSON: ${text.slice(0, 120)}`),
            );
            return;
          }
        }
        settled = true;
        clearTimeout(timer);
        resolveResponse({ status: res.statusCode ?? 0, body: parsed as T, headers: res.headers });
      });
    });
    const timer = setTimeout(
      () => fail(new PinholeError('ERR_API_TIMEOUT', `no answer from the daemon on ${socket} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('error', (err) => fail(connectionError(socket, err)));
    req.end(payload);
  });
}

/** A failure to reach or hear the daemon, as one of the codes in the file comment. */
export function connectionError(socket: string, err: Error): PinholeError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') {
    return new PinholeError('ERR_API_NO_DAEMON', `no pinhole daemon answers on ${socket} (is \`pinhole run\` running? use --socket PATH)`, {
      cause: err,
      details: { socket, errno: code },
    });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new PinholeError(
      'ERR_API_PERMISSION',
      `not allowed to connect to ${socket} (${code}): the API is for the daemon's user (root); try sudo`,
      { cause: err, details: { socket, errno: code } },
    );
  }
  return new PinholeError('ERR_API_CONNECTION', `talking to the daemon on ${socket}: ${code ?? err.message}`, {
    cause: err,
    details: { socket, errno: code },
  });
}

/** The daemon's error answer as a PinholeError with its code (details: status, field, errors). */
export function responseError(res: ApiResponse): PinholeError {
  const e = (res.body as { error?: Partial<ApiErrorBody> } | undefined)?.error;
  if (!e || typeof e.code !== 'string') {
    return new PinholeError('ERR_API_BAD_RESPONSE', `the daemon answered HTTP ${res.status} without an error code`, {
      details: { status: res.status },
    });
  }
  const details: Record<string, unknown> = { status: res.status };
  if (e.field !== undefined) details.field = e.field;
  if (e.errors !== undefined) details.errors = e.errors;
  return new PinholeError(e.code, String(e.message ?? ''), { details });
}

/** Typed calls; each throws the daemon's error (responseError) or a connection error. */
export class ApiClient {
  readonly socket: string;
  readonly timeoutMs: number;

  constructor(socket: string = DEFAULT_API_SOCKET, opts: { timeoutMs?: number } = {}) {
    this.socket = socket;
    this.timeoutMs = opts.timeoutMs ?? API_CLIENT_TIMEOUT_MS;
  }

  private async call<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<ApiResponse<T>> {
    const res = await apiRequest<T>(this.socket, method, path, body, { timeoutMs: this.timeoutMs, ...(headers ? { headers } : {}) });
    if (res.status < 200 || res.status > 299) throw responseError(res);
    return res;
  }

  async status(): Promise<DaemonStatus> {
    return (await this.call<DaemonStatus>('GET', '/v1/status')).body;
  }

  async connections(): Promise<ConnectionStatus[]> {
    return (await this.call<{ connections: ConnectionStatus[] }>('GET', '/v1/connections')).body.connections;
  }

  async connection(name: string): Promise<ConnectionStatus> {
    return (await this.call<ConnectionStatus>('GET', connectionPath(name))).body;
  }

  /**
   * Creates or replaces connection `name`; `created` tells which (201 or 200). `ifAbsent`: create
   * only (`If-None-Match: *`): an existing name is the daemon's ERR_API_EXISTS.
   */
  async putConnection(
    name: string,
    body: unknown,
    opts: { ifAbsent?: boolean } = {},
  ): Promise<{ created: boolean; connection: ConnectionStatus }> {
    const res = await this.call<ConnectionStatus>('PUT', connectionPath(name), body, opts.ifAbsent ? { 'If-None-Match': '*' } : undefined);
    return { created: res.status === 201, connection: res.body };
  }

  async deleteConnection(name: string): Promise<void> {
    await this.call('DELETE', connectionPath(name));
  }

  async neighbours(): Promise<NeighbourStatus[]> {
    return (await this.call<{ neighbours: NeighbourStatus[] }>('GET', '/v1/neighbours')).body.neighbours;
  }
}

export function connectionPath(name: string): string {
  return `/v1/connections/${encodeURIComponent(name)}`;
}
