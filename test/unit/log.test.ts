/**
 * Structured logging (src/control/log.ts): one JSON object per line with `level` as a label and
 * an ISO `time`; level filtering (also changed at runtime); the `{ level, event, ... }` adapter;
 * destinations that fail (error events, throwing writes, EPIPE on a closed pipe) never throw.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { asLogFn, createLogger } from '../../src/control/log.ts';

const LOG_MODULE = new URL('../../src/control/log.ts', import.meta.url).pathname;

function collector(): { write(line: string): void; lines: string[]; events(): Record<string, unknown>[] } {
  const lines: string[] = [];
  return {
    lines,
    write(line: string) {
      lines.push(line);
    },
    events: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

test('one JSON line per event: level label, ISO time, the fields, nothing else', () => {
  const out = collector();
  const log = createLogger({ level: 'info', destination: out });
  const before = Date.now();
  log.info({ event: 'ready', mode: 'afxdp', queues: 2 });
  log.warn({ event: 'stats' }, 'counters unavailable');
  assert.equal(out.lines.length, 2);
  for (const l of out.lines) {
    assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), 'exactly one line');
  }
  const [a, b] = out.events();
  assert.deepEqual(Object.keys(a!).sort(), ['event', 'level', 'mode', 'queues', 'time']);
  assert.equal(a!['level'], 'info');
  assert.equal(a!['event'], 'ready');
  assert.equal(a!['queues'], 2);
  assert.match(a!['time'] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const t = Date.parse(a!['time'] as string);
  assert.ok(t >= before - 1 && t <= Date.now() + 1);
  assert.deepEqual({ ...b, time: 0 }, { level: 'warn', time: 0, event: 'stats', message: 'counters unavailable' });
});

test('levels filter: below the configured level nothing is written; the level can change at runtime', () => {
  const out = collector();
  const log = createLogger({ level: 'warn', destination: out });
  log.debug({ event: 'd' });
  log.info({ event: 'i' });
  log.warn({ event: 'w' });
  log.error({ event: 'e' });
  assert.deepEqual(
    out.events().map((e) => [e['level'], e['event']]),
    [
      ['warn', 'w'],
      ['error', 'e'],
    ],
  );
  out.lines.length = 0;
  log.level = 'debug';
  log.debug({ event: 'd' });
  assert.deepEqual(
    out.events().map((e) => e['level']),
    ['debug'],
  );

  for (const [level, expect] of [
    ['debug', 4],
    ['info', 3],
    ['warn', 2],
    ['error', 1],
  ] as const) {
    const o = collector();
    const f = asLogFn(createLogger({ level, destination: o }));
    for (const l of ['debug', 'info', 'warn', 'error']) f({ level: l, event: l });
    assert.equal(o.lines.length, expect, level);
  }
});

test('asLogFn maps { level, event, ...rest } objects; unknown or missing levels log at info; time is the logger’s', () => {
  const out = collector();
  const log = asLogFn(createLogger({ level: 'debug', destination: out }));
  log({ level: 'error', event: 'worker-died', worker: 1, message: 'exit code 3' });
  log({ level: 'debug', event: 'poll', n: 0 });
  log({ event: 'no-level' });
  log({ level: 'loud', event: 'odd-level' });
  log({ level: 'info', event: 'stamped', time: '1970-01-01T00:00:00.000Z' });
  log({ level: 'info', event: 'typed', ok: true, none: null, list: [1, 'a'], nested: { a: 1 }, big: 12n, skip: undefined });
  const ev = out.events();
  assert.deepEqual(
    ev.map((e) => [e['level'], e['event']]),
    [
      ['error', 'worker-died'],
      ['debug', 'poll'],
      ['info', 'no-level'],
      ['info', 'odd-level'],
      ['info', 'stamped'],
      ['info', 'typed'],
    ],
  );
  assert.equal(ev[0]!['worker'], 1);
  assert.equal(ev[0]!['message'], 'exit code 3');
  assert.notEqual(ev[4]!['time'], '1970-01-01T00:00:00.000Z');
  assert.equal(out.lines[4]!.match(/"time"/g)!.length, 1, 'one time key');
  assert.deepEqual(
    { ...ev[5], time: 0 },
    { level: 'info', time: 0, event: 'typed', ok: true, none: null, list: [1, 'a'], nested: { a: 1 }, big: 12 },
  );
});

test('a destination that fails (error event or throwing write) is dropped from then on; logging never throws', () => {
  const em = new EventEmitter() as EventEmitter & { write(line: string): void; lines: string[] };
  em.lines = [];
  em.write = (line: string) => {
    em.lines.push(line);
  };
  const log = createLogger({ level: 'info', destination: em });
  log.info({ event: 'a' });
  em.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  log.info({ event: 'b' });
  assert.equal(em.lines.length, 1);

  let calls = 0;
  const throwing = {
    write() {
      calls++;
      throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    },
  };
  const log2 = asLogFn(createLogger({ level: 'info', destination: throwing }));
  log2({ level: 'info', event: 'x' });
  log2({ level: 'info', event: 'y' });
  assert.equal(calls, 1);
});

test('a file descriptor destination gets synchronous lines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pinhole-log-'));
  try {
    const file = join(dir, 'log.jsonl');
    const fd = openSync(file, 'w');
    try {
      const log = asLogFn(createLogger({ level: 'info', destination: fd }));
      log({ level: 'info', event: 'one' });
      log({ level: 'warn', event: 'two' });
      const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
      assert.deepEqual(
        lines.map((l) => (JSON.parse(l) as { event: string }).event),
        ['one', 'two'],
      );
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs a child that logs 2000 lines into `fd` whose reading end the parent closed at once. */
async function logIntoClosedPipe(fd: 2 | 3): Promise<{ code: number | null; stdout: string }> {
  const script = [
    `import { asLogFn, createLogger } from ${JSON.stringify(LOG_MODULE)};`,
    `const log = asLogFn(createLogger({ level: 'info', destination: ${fd} }));`,
    `for (let i = 0; i < 2000; i++) log({ level: 'info', event: 'line', i, pad: 'x'.repeat(200) });`,
    `await new Promise((r) => setTimeout(r, 50));`,
    `log({ level: 'info', event: 'after' });`,
    `process.stdout.write('survived\\n');`,
  ].join('\n');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
  });
  child.stdio[fd]!.destroy();
  let stdout = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout };
}

test('EPIPE on stderr (reader gone) does not throw: the process keeps running and exits 0', async () => {
  const r = await logIntoClosedPipe(2);
  assert.equal(r.stdout, 'survived\n');
  assert.equal(r.code, 0);
});

test('EPIPE on another descriptor does not throw either', async () => {
  const r = await logIntoClosedPipe(3);
  assert.equal(r.stdout, 'survived\n');
  assert.equal(r.code, 0);
});
