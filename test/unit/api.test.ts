/**
 * The local API (src/api) and the CLI verbs over it, against a fake daemon (test/support/fake-daemon.ts)
 * on a unix socket in a private temporary directory: every route, every error path, framing
 * (oversize, chunked, pipelined, slow clients), concurrency, socket setup (permissions, stale and
 * live sockets), and `pinhole status|connect|disconnect`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdtemp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { apiRequest, ApiClient } from '../../src/api/client.ts';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../../src/api/server.ts';
import { main } from '../../src/control/cli.ts';
import type { CommandIO } from '../../src/control/io.ts';
import { PinholeError } from '../../src/sys/index.ts';
import { FakeDaemon } from '../support/fake-daemon.ts';

let dir: string;
let seq = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ph-api-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const POD_A = { local: { interface: 'ph-wa0' }, vxlan: { vni: 100, remote: '198.18.0.2' } };
const POD_B = { local: { interface: 'ph-wb0p' }, vxlan: { vni: 200, remote: '198.18.0.3', port: 4790, ttl: 32 } };

interface Env {
  daemon: FakeDaemon;
  server: ApiServer;
  socket: string;
  logs: Record<string, unknown>[];
}

/** A fake daemon with pod-a (from the file) behind a fresh server on its own socket. */
async function env(
  opts: Partial<ApiServerOptions> = {},
  daemon = new FakeDaemon({ connections: [{ name: 'pod-a', ...POD_A }] }),
): Promise<Env> {
  const socket = join(dir, `s${++seq}`, 'api.sock');
  const logs: Record<string, unknown>[] = [];
  const server = await startApiServer(daemon, { socket, log: (e) => logs.push(e), ...opts });
  return { daemon, server, socket, logs };
}

/** Runs `fn` against a fresh env (see env()) and closes its server even when `fn` fails. */
async function withEnv(fn: (e: Env) => Promise<void>, opts: Partial<ApiServerOptions> = {}): Promise<void> {
  const e = await env(opts);
  try {
    await fn(e);
  } finally {
    await e.server.close();
  }
}

/** Sends raw bytes, returns everything the server sends until it closes the connection. */
function raw(
  socket: string,
  data: string | Buffer,
  opts: { keepWriting?: Buffer; timeoutMs?: number } = {},
): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = connect({ path: socket });
    const chunks: Buffer[] = [];
    let pump: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new Error(`server did not close the connection within ${opts.timeoutMs ?? 5000} ms; got: ${Buffer.concat(chunks).toString()}`),
      );
    }, opts.timeoutMs ?? 5000);
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => undefined); // EPIPE/ECONNRESET while we keep writing: the server closed on us
    s.on('close', () => {
      clearTimeout(timer);
      clearInterval(pump);
      resolve({ text: Buffer.concat(chunks).toString(), closedAfterMs: Date.now() - started });
    });
    s.write(data);
    if (opts.keepWriting) {
      const chunk = opts.keepWriting;
      pump = setInterval(() => {
        if (!s.destroyed && s.writable) s.write(chunk);
      }, 5);
    }
  });
}

function statusOf(text: string): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  assert.ok(m, `not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  return Number(m[1]);
}

function jsonOf(text: string): { error?: { code: string; message: string } } {
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
}

function errorOf(body: unknown): { code: string; message: string; field?: string; errors?: unknown[] } {
  const e = (body as { error?: { code: string; message: string } }).error;
  assert.ok(e, `not an error body: ${JSON.stringify(body)}`);
  return e;
}

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CommandIO = { out: (s) => void (out += `${s}\n`), err: (s) => void (err += `${s}\n`) };
  const code = await main(argv, io);
  return { code, out, err };
}

// ---- routes -------------------------------------------------------------------------------------

test('GET /v1/status, /v1/connections, /v1/connections/NAME, /v1/neighbours', () =>
  withEnv(async (e) => {
    const st = await apiRequest(e.socket, 'GET', '/v1/status');
    assert.equal(st.status, 200);
    assert.equal(st.headers['content-type'], 'application/json');
    assert.deepEqual(st.body, JSON.parse(JSON.stringify(e.daemon.status())));

    const list = await apiRequest<{ connections: { name: string }[] }>(e.socket, 'GET', '/v1/connections');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.connections.map((c) => c.name),
      ['pod-a'],
    );

    const one = await apiRequest<{ name: string; config: { vxlan: { port: number } } }>(e.socket, 'GET', '/v1/connections/pod-a');
    assert.equal(one.status, 200);
    assert.equal(one.body.name, 'pod-a');
    assert.equal(one.body.config.vxlan.port, 4789);

    const nb = await apiRequest<{ neighbours: { ip: string; usedBy: string[] }[] }>(e.socket, 'GET', '/v1/neighbours');
    assert.equal(nb.status, 200);
    assert.deepEqual(nb.body.neighbours.find((n) => n.ip === '198.18.0.2')?.usedBy, ['pod-a']);

    // A query string is ignored, not a different path.
    assert.equal((await apiRequest(e.socket, 'GET', '/v1/status?verbose=1')).status, 200);
  }));

test('PUT creates (201, Location) then replaces (200); a name in the body must equal the path', () =>
  withEnv(async (e) => {
    const created = await apiRequest<{ name: string; source: string }>(e.socket, 'PUT', '/v1/connections/pod-b', POD_B);
    assert.equal(created.status, 201);
    assert.equal(created.headers.location, '/v1/connections/pod-b');
    assert.equal(created.body.name, 'pod-b');
    assert.equal(created.body.source, 'api');

    const replaced = await apiRequest<{ config: { vxlan: { vni: number } } }>(e.socket, 'PUT', '/v1/connections/pod-b', {
      ...POD_B,
      name: 'pod-b',
      vxlan: { ...POD_B.vxlan, vni: 201 },
    });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.config.vxlan.vni, 201);

    const other = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', { ...POD_B, name: 'pod-c' });
    assert.equal(other.status, 400);
    assert.equal(errorOf(other.body).code, 'ERR_CONFIG_INVALID');
    assert.equal(errorOf(other.body).field, 'name');
    assert.deepEqual(e.daemon.changes, ['put pod-b', 'put pod-b']);
  }));

test('DELETE answers 204 with no body; an unknown connection is 404 ERR_API_NOT_FOUND (GET and DELETE)', () =>
  withEnv(async (e) => {
    const del = await apiRequest(e.socket, 'DELETE', '/v1/connections/pod-a');
    assert.equal(del.status, 204);
    assert.equal(del.body, undefined);
    assert.equal(e.daemon.conns.size, 0);
    for (const method of ['DELETE', 'GET']) {
      const r = await apiRequest(e.socket, method, '/v1/connections/pod-a');
      assert.equal(r.status, 404, method);
      assert.equal(errorOf(r.body).code, 'ERR_API_NOT_FOUND');
      assert.match(errorOf(r.body).message, /no connection named 'pod-a'/);
    }
  }));

test('unknown paths are 404 ERR_API_NO_ROUTE', () =>
  withEnv(async (e) => {
    for (const path of ['/', '/v1', '/v1/', '/v2/status', '/v1/statuses', '/v1/connections/', '/v1/connections/pod-a/x', '/v1/status/']) {
      const r = await apiRequest(e.socket, 'GET', path);
      assert.equal(r.status, 404, path);
      assert.equal(errorOf(r.body).code, 'ERR_API_NO_ROUTE', path);
    }
    const bad = await apiRequest(e.socket, 'GET', '/v1/connections/%E0%A4%A');
    assert.equal(bad.status, 400);
    assert.equal(errorOf(bad.body).code, 'ERR_API_BAD_REQUEST');
  }));

test('a wrong method is 405 ERR_API_METHOD with an Allow header', () =>
  withEnv(async (e) => {
    const cases: [string, string, string][] = [
      ['POST', '/v1/status', 'GET'],
      ['DELETE', '/v1/connections', 'GET'],
      ['PUT', '/v1/neighbours', 'GET'],
      ['POST', '/v1/connections/pod-a', 'GET, PUT, DELETE'],
      ['PATCH', '/v1/connections/pod-a', 'GET, PUT, DELETE'],
    ];
    for (const [method, path, allow] of cases) {
      const r = await apiRequest(e.socket, method, path, method === 'GET' ? undefined : {});
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.allow, allow);
      assert.equal(errorOf(r.body).code, 'ERR_API_METHOD');
    }
    assert.equal(e.daemon.changes.length, 0);
  }));

// ---- bodies ---------------------------------------------------------------------------------------

test('malformed JSON, an empty body and invalid UTF-8 are 400 ERR_API_BAD_JSON; nothing changes', () =>
  withEnv(async (e) => {
    for (const body of ['{"local":', '', '   ', "{'a': 1}", Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]) {
      const r = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', body);
      assert.equal(r.status, 400, JSON.stringify(String(body)));
      assert.equal(errorOf(r.body).code, 'ERR_API_BAD_JSON');
    }
    assert.equal(e.daemon.changes.length, 0);
  }));

test('an invalid connection is 400 ERR_CONFIG_INVALID naming the field; nothing changes', () =>
  withEnv(async (e) => {
    const cases: [unknown, RegExp][] = [
      [{ ...POD_B, vxlan: { ...POD_B.vxlan, vni: 16777216 } }, /vxlan\.vni$/],
      [{ ...POD_B, vxlan: { ...POD_B.vxlan, vni: 'ten' } }, /vxlan\.vni$/],
      [{ ...POD_B, vxlan: { ...POD_B.vxlan, remote: 'not-an-ip' } }, /vxlan\.remote$/],
      [{ ...POD_B, vxlan: { ...POD_B.vxlan, port: 0 } }, /vxlan\.port$/],
      [{ ...POD_B, vxlan: { ...POD_B.vxlan, bogus: 1 } }, /vxlan\.bogus$/],
      [{ local: POD_B.local }, /^connection$/],
      [{ vxlan: POD_B.vxlan }, /local$/],
      [[1, 2], /^connection$/],
      [null, /^connection$/],
    ];
    for (const [body, field] of cases) {
      const r = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      const err = errorOf(r.body);
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.match(err.field ?? '', field, JSON.stringify(err));
    }
    // An invalid name in the path is the same kind of error.
    const r = await apiRequest(e.socket, 'PUT', '/v1/connections/Pod_B!', POD_B);
    assert.equal(r.status, 400);
    assert.match(errorOf(r.body).field ?? '', /name$/);
    assert.equal(e.daemon.changes.length, 0);
    assert.deepEqual([...e.daemon.conns.keys()], ['pod-a']);
  }));

test('an interface or tunnel used by another connection is 409 ERR_API_CONFLICT; nothing changes', () =>
  withEnv(async (e) => {
    const sameIf = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', { ...POD_B, local: POD_A.local });
    assert.equal(sameIf.status, 409);
    assert.equal(errorOf(sameIf.body).code, 'ERR_API_CONFLICT');
    assert.equal(errorOf(sameIf.body).field, 'local.interface');
    const sameTunnel = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', { ...POD_B, vxlan: POD_A.vxlan });
    assert.equal(sameTunnel.status, 409);
    assert.match(errorOf(sameTunnel.body).message, /pod-a/);
    assert.equal(e.daemon.changes.length, 0);
  }));

// The real daemon answers the same (test/lab/api.test.ts, 'a remote of a family ...').
test('a remote of a family the uplink has no tunnel address for is 409 ERR_TUNNEL_NO_ADDRESS naming vxlan.remote; nothing changes', () =>
  withEnv(async (e) => {
    // The fake's uplink has IPv4 only.
    for (const name of ['pod-b', 'pod-a']) {
      const r = await apiRequest(e.socket, 'PUT', `/v1/connections/${name}`, {
        ...POD_B,
        vxlan: { ...POD_B.vxlan, remote: '2001:db8::2' },
      });
      assert.equal(r.status, 409, name);
      const err = errorOf(r.body);
      assert.equal(err.code, 'ERR_TUNNEL_NO_ADDRESS');
      assert.equal(err.field, 'vxlan.remote');
      assert.match(err.message, /2001:db8::2 is IPv6, but uplink ph-up0 has no global IPv6 address/);
    }
    assert.equal(e.daemon.changes.length, 0);
    assert.equal(e.daemon.conns.get('pod-a')?.config.vxlan?.remote, '198.18.0.2');
  }));

// ---- If-None-Match: * (create only) -------------------------------------------------------------

test('PUT with If-None-Match: * creates (201) but never replaces: 412 ERR_API_EXISTS, nothing changes', () =>
  withEnv(async (e) => {
    const createOnly = { headers: { 'If-None-Match': '*' } };
    const created = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B, createOnly);
    assert.equal(created.status, 201);
    for (const [name, body] of [
      ['pod-b', { ...POD_B, vxlan: { ...POD_B.vxlan, vni: 201 } }],
      ['pod-a', POD_A],
      // The precondition comes first: an existing name with an invalid body is still 412.
      ['pod-a', { local: POD_A.local }],
    ] as const) {
      const r = await apiRequest(e.socket, 'PUT', `/v1/connections/${name}`, body, createOnly);
      assert.equal(r.status, 412, name);
      assert.equal(errorOf(r.body).code, 'ERR_API_EXISTS');
      assert.equal(errorOf(r.body).field, 'name');
      assert.match(errorOf(r.body).message, new RegExp(`connection '${name}' exists`));
    }
    assert.deepEqual(e.daemon.changes, ['put pod-b']);
    assert.equal(e.daemon.conns.get('pod-b')?.config.vxlan?.vni, 200);
    // Any other value is refused, never ignored (there are no entity tags).
    const etag = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-c', POD_B, { headers: { 'If-None-Match': '"abc"' } });
    assert.equal(etag.status, 400);
    assert.equal(errorOf(etag.body).code, 'ERR_API_BAD_REQUEST');
    // Without the header PUT still replaces.
    assert.equal((await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B)).status, 200);
  }));

test('10 concurrent create-only PUTs of one name: exactly one 201, nine 412', () =>
  withEnv(async (e) => {
    e.daemon.changeDelayMs = 2;
    const rs = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        apiRequest(
          e.socket,
          'PUT',
          '/v1/connections/pod-new',
          { local: { interface: `ph-n${i}` }, vxlan: { vni: 3000 + i, remote: '198.18.0.9' } },
          { headers: { 'If-None-Match': '*' } },
        ),
      ),
    );
    assert.deepEqual(rs.map((r) => r.status).sort(), [201, ...Array<number>(9).fill(412)]);
    for (const r of rs) if (r.status === 412) assert.equal(errorOf(r.body).code, 'ERR_API_EXISTS');
    assert.deepEqual(e.daemon.changes, ['put pod-new']);
  }));

test('PUT needs Content-Type: application/json (415 ERR_API_CONTENT_TYPE)', () =>
  withEnv(async (e) => {
    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'application/jsonx']) {
      const r = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B, { headers: { 'Content-Type': ct } });
      assert.equal(r.status, 415, ct);
      assert.equal(errorOf(r.body).code, 'ERR_API_CONTENT_TYPE');
    }
    // No Content-Type at all.
    const body = JSON.stringify(POD_B);
    const none = await raw(
      e.socket,
      `PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    assert.equal(statusOf(none.text), 415);
    // Parameters and case are fine.
    const ok = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B, {
      headers: { 'Content-Type': 'Application/JSON; charset=UTF-8' },
    });
    assert.equal(ok.status, 201);
  }));

test('an oversize body is 413 by its Content-Length, before any of it is read, and the connection closes', () =>
  withEnv(
    async (e) => {
      // Headers only: were the server waiting for the body it would answer 408 after 10 s, not at once.
      const r = await raw(
        e.socket,
        'PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n',
      );
      assert.equal(statusOf(r.text), 413);
      assert.match(r.text, /\r\nConnection: close\r\n/i);
      assert.equal(jsonOf(r.text).error?.code, 'ERR_API_BODY_TOO_LARGE');
      assert.ok(r.closedAfterMs < 2000, `closed after ${r.closedAfterMs} ms`);

      // Through the client: the exact limit passes the size check, one byte more does not.
      const limit = 64 * 1024;
      const pad = (n: number): string => {
        const base = JSON.stringify(POD_B);
        return `${base.slice(0, -1)}${' '.repeat(n - base.length)}}`;
      };
      const atLimit = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', pad(limit));
      assert.equal(atLimit.status, 201);
      const over = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-c', pad(limit + 1));
      assert.equal(over.status, 413);
      assert.equal(errorOf(over.body).code, 'ERR_API_BODY_TOO_LARGE');
    },
    { bodyTimeoutMs: 10_000 },
  ));

test('a chunked body is cut off as soon as it passes the limit (413), however much more the client sends', () =>
  withEnv(
    async (e) => {
      const chunk = Buffer.from(`400\r\n${' '.repeat(0x400)}\r\n`);
      const r = await raw(
        e.socket,
        Buffer.concat([
          Buffer.from(
            'PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
          ),
          chunk,
        ]),
        { keepWriting: chunk },
      );
      assert.equal(statusOf(r.text), 413);
      assert.equal(jsonOf(r.text).error?.code, 'ERR_API_BODY_TOO_LARGE');
      assert.equal(e.daemon.changes.length, 0);
      // A chunked body within the limit is fine.
      const body = JSON.stringify(POD_B);
      const ok = await raw(
        e.socket,
        `PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      );
      assert.equal(statusOf(ok.text), 201);
    },
    { maxBodyBytes: 1024 },
  ));

test('a PUT without Content-Length or chunked body is 411 ERR_API_LENGTH_REQUIRED', () =>
  withEnv(async (e) => {
    const r = await raw(
      e.socket,
      'PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n',
    );
    assert.equal(statusOf(r.text), 411);
    assert.equal(jsonOf(r.text).error?.code, 'ERR_API_LENGTH_REQUIRED');
  }));

// ---- slow and broken clients ------------------------------------------------------------------

test('headers that do not arrive in time: 408 ERR_API_TIMEOUT and the connection closes', () =>
  withEnv(
    async (e) => {
      const r = await raw(e.socket, 'GET /v1/status HTTP/1.1\r\nHost: x\r\n', { timeoutMs: 3000 });
      assert.equal(statusOf(r.text), 408);
      assert.equal(jsonOf(r.text).error?.code, 'ERR_API_TIMEOUT');
      assert.ok(r.closedAfterMs >= 150 && r.closedAfterMs < 2000, `closed after ${r.closedAfterMs} ms`);
    },
    { headersTimeoutMs: 200 },
  ));

test('a body that does not arrive in time: 408 ERR_API_TIMEOUT and the connection closes; nothing changes', () =>
  withEnv(
    async (e) => {
      const r = await raw(
        e.socket,
        'PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"local":',
        { timeoutMs: 3000 },
      );
      assert.equal(statusOf(r.text), 408);
      assert.equal(jsonOf(r.text).error?.code, 'ERR_API_TIMEOUT');
      assert.ok(r.closedAfterMs >= 150 && r.closedAfterMs < 2000, `closed after ${r.closedAfterMs} ms`);
      assert.equal(e.daemon.changes.length, 0);
    },
    { bodyTimeoutMs: 200 },
  ));

test('a change that takes longer than the request timeouts still completes (they bound receiving, not applying)', () =>
  withEnv(
    async (e) => {
      e.daemon.changeDelayMs = 1500;
      const r = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B);
      assert.equal(r.status, 201);
    },
    { headersTimeoutMs: 100, bodyTimeoutMs: 100 },
  ));

test('malformed HTTP is 400 ERR_API_BAD_REQUEST', () =>
  withEnv(async (e) => {
    const r = await raw(e.socket, 'this is not http\r\n\r\n');
    assert.equal(statusOf(r.text), 400);
    assert.equal(jsonOf(r.text).error?.code, 'ERR_API_BAD_REQUEST');
  }));

test('pipelined requests on one connection are answered in order, whole', () =>
  withEnv(async (e) => {
    const body = JSON.stringify(POD_B);
    const r = await raw(
      e.socket,
      [
        'GET /v1/connections/pod-a HTTP/1.1\r\nHost: x\r\n\r\n',
        `PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        'GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET /v1/connections HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      ].join(''),
    );
    const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 201, 404, 200]);
    assert.match(r.text, /"connections":\[\{"name":"pod-a".*\{"name":"pod-b"/s);
  }));

test('a flood of pipelined requests on one connection is cut off; other clients are unaffected', () =>
  withEnv(async (e) => {
    e.daemon.changeDelayMs = 50; // the first request holds the rest in the queue
    const body = JSON.stringify(POD_B);
    const put = `PUT /v1/connections/pod-b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const r = await raw(e.socket, put + 'GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(200));
    const answered = [...r.text.matchAll(/HTTP\/1\.1 \d{3} /g)].length;
    assert.ok(answered < 200, `${answered} answers`);
    assert.ok(e.logs.some((l) => l.event === 'api-client-error' && /pipelined/.test(String(l.reason))));
    assert.equal((await apiRequest(e.socket, 'GET', '/v1/status')).status, 200);
  }));

// ---- daemon errors ------------------------------------------------------------------------------

test('a busy daemon is 503 ERR_API_BUSY with Retry-After', () =>
  withEnv(async (e) => {
    e.daemon.busy = true;
    for (const [method, path, body] of [
      ['PUT', '/v1/connections/pod-b', POD_B],
      ['DELETE', '/v1/connections/pod-a', undefined],
    ] as const) {
      const r = await apiRequest(e.socket, method, path, body);
      assert.equal(r.status, 503);
      assert.equal(r.headers['retry-after'], '1');
      assert.equal(errorOf(r.body).code, 'ERR_API_BUSY');
    }
  }));

test('a bug is 500 ERR_API_INTERNAL, logged with its stack; a known daemon failure keeps its code', () =>
  withEnv(async (e) => {
    e.daemon.failNext = new TypeError('cannot read properties of undefined');
    const r = await apiRequest(e.socket, 'GET', '/v1/status');
    assert.equal(r.status, 500);
    assert.equal(errorOf(r.body).code, 'ERR_API_INTERNAL');
    assert.match(errorOf(r.body).message, /cannot read properties/);
    const logged = e.logs.find((l) => l.event === 'api-internal-error');
    assert.ok(logged && typeof logged.stack === 'string' && logged.level === 'error');

    e.daemon.failNext = new PinholeError('ERR_XSK_BIND', 'bind xsk to ph-wb0 queue 0: EBUSY');
    const known = await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B);
    assert.equal(known.status, 500);
    assert.equal(errorOf(known.body).code, 'ERR_XSK_BIND');
    // The server keeps answering.
    assert.equal((await apiRequest(e.socket, 'GET', '/v1/status')).status, 200);
  }));

test('change requests are logged with method, path, status and duration', () =>
  withEnv(async (e) => {
    await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B);
    await apiRequest(e.socket, 'DELETE', '/v1/connections/nope');
    const changes = e.logs.filter((l) => l.event === 'api-request' && l.level === 'info');
    assert.equal(changes.length, 2);
    assert.deepEqual(
      changes.map((l) => [l.method, l.path, l.status]),
      [
        ['PUT', '/v1/connections/pod-b', 201],
        ['DELETE', '/v1/connections/nope', 404],
      ],
    );
    assert.equal(changes[1]!.code, 'ERR_API_NOT_FOUND');
    for (const l of changes) assert.equal(typeof l.ms, 'number');
  }));

// ---- concurrency ----------------------------------------------------------------------------------

test('50 parallel requests (GETs, PUTs, DELETEs) all get their own whole answer; changes never overlap', () =>
  withEnv(async (e) => {
    e.daemon.changeDelayMs = 2;
    const puts = Array.from({ length: 20 }, (_, i) =>
      apiRequest<{ name: string }>(e.socket, 'PUT', `/v1/connections/c${i}`, {
        local: { interface: `ph-c${i}` },
        vxlan: { vni: 1000 + i, remote: '198.18.1.1' },
      }),
    );
    const gets = Array.from({ length: 20 }, (_, i) =>
      apiRequest<{ pid?: number; connections?: unknown[] }>(e.socket, 'GET', i % 2 ? '/v1/status' : '/v1/connections'),
    );
    const conflicts = Array.from({ length: 5 }, () => apiRequest(e.socket, 'PUT', '/v1/connections/dup', { ...POD_B, local: POD_A.local }));
    const deletes = Array.from({ length: 5 }, (_, i) => apiRequest(e.socket, 'DELETE', `/v1/connections/missing${i}`));
    const [p, g, c, d] = await Promise.all([Promise.all(puts), Promise.all(gets), Promise.all(conflicts), Promise.all(deletes)]);
    p.forEach((r, i) => {
      assert.equal(r.status, 201);
      assert.equal(r.body.name, `c${i}`);
    });
    g.forEach((r, i) => {
      assert.equal(r.status, 200);
      if (i % 2) assert.equal(r.body.pid, 4242);
      else assert.ok(Array.isArray(r.body.connections));
    });
    for (const r of c) assert.equal(r.status, 409);
    for (const r of d) assert.equal(r.status, 404);
    assert.equal(e.daemon.conns.size, 21);
    assert.equal(e.daemon.maxConcurrentChanges, 1);
  }));

// ---- the socket -----------------------------------------------------------------------------------

test('the socket directory is created 0700, the socket is 0600, close() removes the socket', async () => {
  const socket = join(dir, `s${++seq}`, 'deeper', 'api.sock');
  const server = await startApiServer(new FakeDaemon(), { socket });
  try {
    assert.equal((await stat(join(socket, '..'))).mode & 0o777, 0o700);
    const st = await stat(socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(server.socket, socket);
  } finally {
    await server.close();
  }
  await assert.rejects(stat(socket), { code: 'ENOENT' });
  await server.close(); // idempotent
});

test('a socket directory with looser permissions is refused, saying why', async () => {
  const d = join(dir, `s${++seq}`);
  await mkdir(d, { mode: 0o700 });
  await chmod(d, 0o755);
  await assert.rejects(startApiServer(new FakeDaemon(), { socket: join(d, 'api.sock') }), (err: PinholeError) => {
    assert.equal(err.code, 'ERR_API_SOCKET_DIR');
    assert.match(err.message, /mode 0755/);
    assert.match(err.message, /0700/);
    return true;
  });
});

test('a path that exists and is not a socket is not replaced', async () => {
  const d = join(dir, `s${++seq}`);
  await mkdir(d, { mode: 0o700 });
  const path = join(d, 'api.sock');
  await writeFile(path, 'precious');
  await assert.rejects(startApiServer(new FakeDaemon(), { socket: path }), { code: 'ERR_API_SOCKET_PATH' });
  assert.ok((await stat(path)).isFile());
});

test('a live socket is ERR_API_SOCKET_IN_USE and keeps working; a stale one (crashed daemon) is replaced', () =>
  withEnv(async (e) => {
    await assert.rejects(startApiServer(new FakeDaemon(), { socket: e.socket }), (err: PinholeError) => {
      assert.equal(err.code, 'ERR_API_SOCKET_IN_USE');
      assert.match(err.message, new RegExp(e.socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      return true;
    });
    assert.equal((await apiRequest(e.socket, 'GET', '/v1/status')).status, 200);

    // A process that listened and was SIGKILLed leaves its socket file behind.
    const d = join(dir, `s${++seq}`);
    await mkdir(d, { mode: 0o700 });
    const path = join(d, 'api.sock');
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    assert.ok((await stat(path)).isSocket());
    await assert.rejects(apiRequest(path, 'GET', '/v1/status'), { code: 'ERR_API_NO_DAEMON' });

    const server = await startApiServer(new FakeDaemon(), { socket: path });
    try {
      assert.equal((await apiRequest(path, 'GET', '/v1/status')).status, 200);
    } finally {
      await server.close();
    }
  }));

test('close() lets a request in flight finish, then stops answering', async () => {
  const e = await env();
  e.daemon.changeDelayMs = 300;
  const pending = apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B);
  await new Promise((r) => setTimeout(r, 50));
  await e.server.close();
  assert.equal((await pending).status, 201);
  await assert.rejects(apiRequest(e.socket, 'GET', '/v1/status'), { code: 'ERR_API_NO_DAEMON' });
});

// ---- client ---------------------------------------------------------------------------------------

test('the client says when no daemon answers (ENOENT, ECONNREFUSED)', async () => {
  const socket = join(dir, 'nobody-here.sock');
  await assert.rejects(apiRequest(socket, 'GET', '/v1/status'), (err: PinholeError) => {
    assert.equal(err.code, 'ERR_API_NO_DAEMON');
    assert.equal(err.message, `no pinhole daemon answers on ${socket} (is \`pinhole run\` running? use --socket PATH)`);
    return true;
  });
  // The default socket's message names it as the brief asks.
  const client = new ApiClient();
  assert.equal(client.socket, '/run/pinhole/api.sock');
});

test('ApiClient: typed calls, daemon errors as PinholeError with code, status and field', () =>
  withEnv(async (e) => {
    const api = new ApiClient(e.socket);
    assert.equal((await api.status()).pid, 4242);
    assert.deepEqual(
      (await api.connections()).map((c) => c.name),
      ['pod-a'],
    );
    assert.equal((await api.connection('pod-a')).config.vxlan!.vni, 100);
    assert.equal((await api.putConnection('pod-b', POD_B)).created, true);
    assert.equal((await api.putConnection('pod-b', POD_B)).created, false);
    await assert.rejects(api.putConnection('pod-b', POD_B, { ifAbsent: true }), (err: PinholeError) => {
      assert.equal(err.code, 'ERR_API_EXISTS');
      assert.equal(err.details?.status, 412);
      assert.equal(err.details?.field, 'name');
      return true;
    });
    assert.ok((await api.neighbours()).length >= 2);
    await api.deleteConnection('pod-b');
    await assert.rejects(api.connection('pod-b'), (err: PinholeError) => {
      assert.equal(err.code, 'ERR_API_NOT_FOUND');
      assert.equal(err.details?.status, 404);
      return true;
    });
    await assert.rejects(api.putConnection('pod-b', { ...POD_B, vxlan: { vni: -1, remote: '198.18.0.9' } }), (err: PinholeError) => {
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      assert.match(String(err.details?.field), /vxlan\.vni$/);
      return true;
    });
  }));

// ---- CLI ------------------------------------------------------------------------------------------

test('pinhole status: the table (uplink mode and why, queues, ports, connections, counters, next hops, neighbours)', () =>
  withEnv(async (e) => {
    await apiRequest(e.socket, 'PUT', '/v1/connections/pod-b', POD_B);
    const r = await cli('status', '--socket', e.socket);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, '');
    const out = r.out;
    assert.match(out, /^pinhole 0\.1\.0, pid 4242, up 1h02m05s/);
    assert.match(out, /^state +running$/m);
    assert.match(out, /^uplink +ph-up0: afxdp \(XDP native\), copy mode, native XDP via bpf_link$/m);
    assert.match(out, /^ +XSK_COPY_MODE: veth does not support zero-copy$/m);
    assert.match(out, /^queues +2$/m);
    assert.match(out, /^ports +4789, 4790$/m);
    assert.match(out, /^addresses +198\.18\.0\.1$/m);
    assert.match(out, /^pinhole +pass 100, redirect 12, drop 0$/m);
    assert.match(out, /^drops +decap:unknown-vni 3$/m);
    assert.match(out, /^QUEUE +RX_FRAMES +RX_BYTES +TX_FRAMES +TX_BYTES$/m);
    assert.match(out, /^CONNECTION +VNI +REMOTE +LOCAL +DRIVER +NEXT HOP +MAC +STATE +SOURCE$/m);
    assert.match(out, /^pod-a +100 +198\.18\.0\.2:4789 +ph-wa0 +afxdp +198\.18\.0\.2 +02:00:00:00:00:01 +REACHABLE +file$/m);
    assert.match(out, /^pod-b +200 +198\.18\.0\.3:4790 +ph-wb0p +afpacket +198\.18\.0\.3 +02:00:00:00:00:02 +REACHABLE +api$/m);
    assert.match(out, /^CONNECTION +FRAMES IN +BYTES IN +FRAMES OUT +BYTES OUT +DROPS$/m);
    assert.match(out, /^pod-a +10 +1000 +20 +2000 +0$/m);
    assert.match(out, /^pod-b +20 +2000 +40 +4000 +1$/m);
    assert.match(out, /^ +pod-b: driver afpacket\n +WORKLOAD_NO_XDP: the peer has no XDP program$/m);
    assert.match(out, /^ +pod-b: drops drop_nexthop 1$/m);
    assert.match(out, /^NEIGHBOUR +DEV +MAC +STATE +USED BY$/m);
    assert.match(out, /^198\.18\.0\.2 +ph-up0 +02:00:00:00:00:01 +REACHABLE +pod-a$/m);
    assert.doesNotMatch(out, /198\.18\.0\.254/); // not used by a connection
  }));

test('pinhole status while the daemon recovers: no uplink, the problem named', () =>
  withEnv(async (e) => {
    e.daemon.recovering = true;
    const r = await cli('status', '--socket', e.socket);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^state +recovering$/m);
    assert.match(r.out, /^ +problem +ERR_IFACE_NOT_FOUND: uplink ph-up0 is gone/m);
    assert.match(r.out, /^uplink +none \(recovering\)$/m);
  }));

test('pinhole status --json: the status document with the neighbours', () =>
  withEnv(async (e) => {
    const r = await cli('status', '--json', '--socket', e.socket);
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out);
    assert.deepEqual(doc, JSON.parse(JSON.stringify({ ...e.daemon.status(), neighbours: e.daemon.neighbours() })));
  }));

test('pinhole connect creates; an existing name is refused (ERR_API_EXISTS) unless --replace; --json; bad input from the daemon exits 1 with its code', () =>
  withEnv(async (e) => {
    const args = [
      'connect',
      'pod-b',
      '--local',
      'ph-wb0p',
      '--vxlan-vni',
      '200',
      '--remote',
      '198.18.0.3',
      '--port',
      '4790',
      '--ttl',
      '32',
      '--socket',
      e.socket,
    ];
    const created = await cli(...args);
    assert.equal(created.code, 0, created.err);
    assert.match(
      created.out,
      /^created connection pod-b: vni 200, remote 198\.18\.0\.3 port 4790 ttl 32, local ph-wb0p, driver afpacket, next hop 198\.18\.0\.3 02:00:00:00:00:02 \(REACHABLE\)\n {2}WORKLOAD_NO_XDP: /,
    );
    assert.deepEqual(e.daemon.conns.get('pod-b')?.config, {
      name: 'pod-b',
      local: { interface: 'ph-wb0p' },
      vxlan: { vni: 200, remote: '198.18.0.3', family: 4, port: 4790, ttl: 32 },
    });
    // The name exists: refused, nothing changed, and the message says how to replace it.
    const exists = await cli(...args.map((a) => (a === '200' ? '201' : a)));
    assert.equal(exists.code, 1);
    assert.equal(exists.out, '');
    assert.equal(
      exists.err,
      "pinhole: ERR_API_EXISTS: connection 'pod-b' exists: nothing changed (--replace to replace it, or `pinhole disconnect pod-b` first)\n",
    );
    assert.equal(e.daemon.conns.get('pod-b')?.config.vxlan?.vni, 200);
    const exists2 = await cli(
      'connect',
      'pod-a',
      '--local',
      'ph-wa0',
      '--vxlan-vni',
      '100',
      '--remote',
      '198.18.0.2',
      '--socket',
      e.socket,
    );
    assert.equal(exists2.code, 1);
    assert.match(exists2.err, /^pinhole: ERR_API_EXISTS: connection 'pod-a' exists/);
    assert.deepEqual(e.daemon.changes, ['put pod-b']);

    const replaced = await cli(...args.map((a) => (a === '200' ? '201' : a)), '--replace');
    assert.equal(replaced.code, 0, replaced.err);
    assert.match(replaced.out, /^replaced connection pod-b: vni 201/);
    assert.equal(e.daemon.conns.get('pod-b')?.config.vxlan?.vni, 201);
    // --replace also creates.
    const createdByReplace = await cli(
      'connect',
      'pod-d',
      '--local',
      'ph-wd0',
      '--vxlan-vni',
      '9',
      '--remote',
      '198.18.0.5',
      '--replace',
      '--socket',
      e.socket,
    );
    assert.equal(createdByReplace.code, 0, createdByReplace.err);
    assert.match(createdByReplace.out, /^created connection pod-d/);
    const json = await cli(...args, '--replace', '--json');
    assert.equal(JSON.parse(json.out).created, false);
    assert.equal(JSON.parse(json.out).connection.name, 'pod-b');

    const badVni = await cli(
      'connect',
      'pod-c',
      '--local',
      'ph-wc0',
      '--vxlan-vni',
      '16777216',
      '--remote',
      '198.18.0.4',
      '--socket',
      e.socket,
    );
    assert.equal(badVni.code, 1);
    assert.match(badVni.err, /^pinhole: ERR_CONFIG_INVALID: connection\.vxlan\.vni: must be an integer 0\.\.16777215\n$/);
    const family = await cli('connect', 'pod-c', '--local', 'ph-wc0', '--vxlan-vni', '7', '--remote', '2001:db8::4', '--socket', e.socket);
    assert.equal(family.code, 1);
    assert.match(
      family.err,
      /^pinhole: ERR_TUNNEL_NO_ADDRESS: vxlan\.remote: remote 2001:db8::4 is IPv6, but uplink ph-up0 has no global IPv6 address/,
    );
    const conflict = await cli('connect', 'pod-c', '--local', 'ph-wa0', '--vxlan-vni', '7', '--remote', '198.18.0.4', '--socket', e.socket);
    assert.equal(conflict.code, 1);
    assert.match(conflict.err, /^pinhole: ERR_API_CONFLICT: .*pod-a/);
  }));

test('pinhole connect: command-line mistakes exit 2 before asking the daemon', () =>
  withEnv(async (e) => {
    const base = ['--local', 'ph-wc0', '--vxlan-vni', '7', '--remote', '198.18.0.4', '--socket', e.socket];
    const cases: string[][] = [
      ['connect', ...base],
      ['connect', 'a', 'b', ...base],
      ['connect', 'pod-c', '--vxlan-vni', '7', '--remote', '198.18.0.4', '--socket', e.socket],
      ['connect', 'pod-c', '--local', 'ph-wc0', '--remote', '198.18.0.4', '--socket', e.socket],
      ['connect', 'pod-c', '--local', 'ph-wc0', '--vxlan-vni', '7', '--socket', e.socket],
      ['connect', 'pod-c', ...base.slice(0, 3), 'ten', ...base.slice(4)],
      ['connect', 'pod-c', ...base, '--port', '47x'],
      ['connect', 'pod-c', ...base, '--ttl', '-1'],
      ['connect', 'pod-c', ...base, '--bogus'],
      ['connect', 'pod-c', ...base.slice(0, 6), '--socket', ''],
    ];
    for (const args of cases) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, /^pinhole: ERR_(CLI_USAGE|PARSE_ARGS_\w+): .*\nusage: pinhole connect NAME/s);
    }
    assert.equal(e.daemon.changes.length, 0);
  }));

test('pinhole disconnect removes; an unknown name exits 1 with ERR_API_NOT_FOUND; no NAME exits 2', () =>
  withEnv(async (e) => {
    const ok = await cli('disconnect', 'pod-a', '--socket', e.socket);
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out, 'removed connection pod-a\n');
    const again = await cli('disconnect', 'pod-a', '--socket', e.socket);
    assert.equal(again.code, 1);
    assert.equal(again.err, "pinhole: ERR_API_NOT_FOUND: no connection named 'pod-a'\n");
    const none = await cli('disconnect', '--socket', e.socket);
    assert.equal(none.code, 2);
    assert.match(none.err, /^pinhole: ERR_CLI_USAGE: disconnect needs a NAME\nusage: pinhole disconnect NAME/);
  }));

test('every verb says clearly when no daemon answers (exit 1), and --help prints its usage', async () => {
  const socket = join(dir, 'no-daemon.sock');
  for (const args of [
    ['status'],
    ['status', '--json'],
    ['connect', 'x', '--local', 'a', '--vxlan-vni', '1', '--remote', '198.18.0.9'],
    ['disconnect', 'x'],
  ]) {
    const r = await cli(...args, '--socket', socket);
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(
      r.err,
      `pinhole: ERR_API_NO_DAEMON: no pinhole daemon answers on ${socket} (is \`pinhole run\` running? use --socket PATH)\n`,
    );
    assert.equal(r.out, '');
  }
  for (const cmd of ['status', 'connect', 'disconnect']) {
    const r = await cli(cmd, '--help');
    assert.equal(r.code, 0);
    assert.match(r.out, new RegExp(`^usage: pinhole ${cmd}\\b.*--socket PATH`));
  }
});
