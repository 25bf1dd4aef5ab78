/**
 * The metrics endpoint: a plain HTTP server with one resource, `GET /metrics` (also HEAD), in
 * the Prometheus text format. Anything else is 404 (another path) or 405 (another method, with
 * `Allow: GET, HEAD`). No TLS, no authentication: the config's default and documented use is a
 * loopback address (127.0.0.1:9464, [::1]:9464) scraped by a local agent; exposing it further
 * is the operator's explicit choice.
 *
 * `listen` strings are `host:port` with the host an IPv4 literal, an IPv6 literal in brackets
 * or `localhost`, and the port 0..65535 (0: any free port; `address` tells which). Bad strings
 * are ERR_CONFIG_INVALID (details.field = 'metrics.listen'), like the config file's own checks.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIPv4, isIPv6, type AddressInfo } from 'node:net';

import { PinholeError } from '../sys/index.ts';
import type { Metrics } from './metrics.ts';

export interface ListenAddress {
  /** Without brackets: '127.0.0.1', '::1', 'localhost'. */
  host: string;
  port: number;
}

export interface MetricsServer {
  /** Where it listens, `host:port` (IPv6 in brackets), with the actual port when 0 was asked. */
  address: string;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

export const DEFAULT_METRICS_LISTEN = '127.0.0.1:9464';

function badListen(listen: string, why: string): PinholeError {
  return new PinholeError('ERR_CONFIG_INVALID', `metrics.listen: ${JSON.stringify(listen)}: ${why}`, {
    details: { field: 'metrics.listen', value: listen },
  });
}

/** `127.0.0.1:9464` → { host: '127.0.0.1', port: 9464 }; `[::1]:9464` → { host: '::1', ... }. */
export function parseListen(listen: string): ListenAddress {
  if (typeof listen !== 'string' || listen === '') throw badListen(String(listen), 'must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464');
  const colon = listen.lastIndexOf(':');
  if (colon < 0) throw badListen(listen, 'no port: must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464');
  const hostPart = listen.slice(0, colon);
  const portPart = listen.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portPart) || Number(portPart) > 65535) throw badListen(listen, 'the port must be a number 0..65535');
  let host: string;
  if (hostPart.startsWith('[')) {
    if (!hostPart.endsWith(']') || !isIPv6(hostPart.slice(1, -1)))
      throw badListen(listen, 'an IPv6 address in brackets must be a valid address, e.g. [::1]:9464');
    host = hostPart.slice(1, -1);
  } else if (isIPv4(hostPart) || hostPart === 'localhost') {
    host = hostPart;
  } else if (isIPv6(hostPart) || hostPart.includes(':')) {
    throw badListen(listen, 'an IPv6 address must be in brackets, e.g. [::1]:9464');
  } else {
    throw badListen(listen, 'the host must be an IPv4 address, an IPv6 address in brackets or localhost');
  }
  return { host, port: Number(portPart) };
}

/** `host:port` with IPv6 in brackets. */
export function formatListen(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * Serves `metrics` on `listen`. Errors after the server is up (e.g. EMFILE on accept) go to
 * `log` as `metrics-server-error` events instead of crashing the daemon.
 */
export async function startMetricsServer(
  metrics: Metrics,
  listen: string = DEFAULT_METRICS_LISTEN,
  log?: (event: Record<string, unknown>) => void,
): Promise<MetricsServer> {
  const where = parseListen(listen);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    let body: string;
    try {
      body = await metrics.text();
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics unavailable: ${(err as Error).message}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const server = createServer((req, res) => {
    // A request body (none expected) is read and ignored so the connection stays usable.
    req.resume();
    void handle(req, res);
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(
        new PinholeError('ERR_METRICS_LISTEN', `listen for metrics on ${formatListen(where)}: ${err.code ?? err.message}`, {
          cause: err,
          details: { errno: err.code },
        }),
      );
    };
    server.once('error', onError);
    server.listen({ host: where.host, port: where.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });

  server.on('error', (err: NodeJS.ErrnoException) => {
    log?.({ level: 'warn', event: 'metrics-server-error', code: err.code ?? null, message: err.message });
  });

  const bound = server.address() as AddressInfo;
  let closing: Promise<void> | null = null;
  return {
    address: formatListen({ host: bound.address, port: bound.port }),
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
