/**
 * The API socket is for the daemon's user only (root): an unprivileged user cannot connect —
 * neither through the 0700 directory nor, with that directory opened up, through the 0600 socket —
 * and `pinhole status` run as that user says so (ERR_API_PERMISSION). A socket directory owned by
 * another user is refused at start. Runs the unprivileged side as nobody (setpriv).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { apiRequest } from '../../src/api/client.ts';
import { startApiServer, type ApiServer } from '../../src/api/server.ts';
import { PINHOLE_BIN } from '../helpers/cli.ts';
import { requireRoot } from '../helpers/require.ts';
import { FakeDaemon } from '../support/fake-daemon.ts';

requireRoot();

const NOBODY = ['--reuid', '65534', '--regid', '65534', '--clear-groups'];

/** Runs `argv` as nobody; returns exit code and output. */
function asNobody(argv: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('setpriv', [...NOBODY, ...argv], { encoding: 'utf8', timeout: 60_000, cwd: '/' });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A bare connect() as nobody: prints `connected` or the errno code. */
function connectAsNobody(socket: string): string {
  const script = `const s = require('net').connect(${JSON.stringify(socket)});
s.on('connect', () => { console.log('connected'); s.destroy(); });
s.on('error', (e) => console.log(e.code));`;
  const r = asNobody([process.execPath, '-e', script]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

let top: string;
let server: ApiServer;
let socket: string;

before(async () => {
  top = await mkdtemp(join(tmpdir(), 'ph-api-perms-'));
  socket = join(top, 'run', 'api.sock');
  server = await startApiServer(new FakeDaemon(), { socket });
});
after(async () => {
  await server?.close();
  await rm(top, { recursive: true, force: true });
});

test('as root: the directory is 0700 root, the socket 0600 root, and it answers', async () => {
  const d = await stat(join(top, 'run'));
  assert.equal(d.mode & 0o777, 0o700);
  assert.equal(d.uid, 0);
  const s = await stat(socket);
  assert.ok(s.isSocket());
  assert.equal(s.mode & 0o777, 0o600);
  assert.equal(s.uid, 0);
  assert.equal((await apiRequest(socket, 'GET', '/v1/status')).status, 200);
});

test('control: nobody does connect to a socket that lets it (so EACCES below is the permissions)', async () => {
  const d = join(top, 'open');
  await mkdir(d, { mode: 0o755 });
  await chmod(top, 0o755);
  const open = createServer();
  try {
    await new Promise<void>((r) => open.listen(join(d, 'open.sock'), r));
    await chmod(join(d, 'open.sock'), 0o666);
    assert.equal(connectAsNobody(join(d, 'open.sock')), 'connected');
  } finally {
    await new Promise((r) => open.close(r));
    await chmod(top, 0o700);
  }
});

test('nobody cannot connect: the 0700 directory stops it', () => {
  assert.equal(connectAsNobody(socket), 'EACCES');
});

test('nobody cannot connect even with the directories opened up: the 0600 socket stops it', async () => {
  await chmod(top, 0o755);
  await chmod(join(top, 'run'), 0o755);
  try {
    assert.equal(connectAsNobody(socket), 'EACCES');
    const r = asNobody([process.execPath, PINHOLE_BIN, 'status', '--socket', socket]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^pinhole: ERR_API_PERMISSION: not allowed to connect to ${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(EACCES\\)`),
    );
    assert.equal(r.stdout, '');
  } finally {
    await chmod(join(top, 'run'), 0o700);
    await chmod(top, 0o700);
  }
  // Root still gets in.
  assert.equal((await apiRequest(socket, 'GET', '/v1/status')).status, 200);
});

test('a socket directory owned by another user is refused at start', async () => {
  const d = join(top, 'theirs');
  await mkdir(d, { mode: 0o700 });
  await chown(d, 65534, 65534);
  await assert.rejects(startApiServer(new FakeDaemon(), { socket: join(d, 'api.sock') }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_API_SOCKET_DIR');
    assert.match(err.message, /owned by uid 65534/);
    return true;
  });
});
