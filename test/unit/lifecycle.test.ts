/**
 * The lifecycle of long-running commands (src/control/lifecycle.ts), driven by emitting signal
 * events on `process` (listeners run, no signal is sent): every stop signal stops, SIGHUP's
 * meaning is a parameter, a second signal during teardown only warns and the third forces the
 * exit, handlers go away on close. Timer options are bounded by what setTimeout honours.
 * (SIGINT/SIGTERM are covered by the lab tests: the test runner may listen for them itself.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_TIMER_MS, parseMillis, runUntilStopped, startLifecycle, STOP_SIGNALS } from '../../src/control/lifecycle.ts';

function listeners(): number[] {
  return STOP_SIGNALS.map((s) => process.listenerCount(s));
}

for (const sig of ['SIGHUP', 'SIGQUIT'] as const) {
  test(`${sig} requests a stop (once), and is logged`, async () => {
    const logged: Record<string, unknown>[] = [];
    const life = startLifecycle({ log: (e) => logged.push(e) });
    try {
      process.emit(sig, sig);
      assert.equal(await life.stopRequested, sig);
      assert.equal(life.reason, sig);
      life.requestStop('later');
      assert.equal(life.reason, sig, 'the first request wins');
      assert.deepEqual(logged, [{ level: 'info', event: 'signal', signal: sig, message: 'stopping' }]);
    } finally {
      life.close();
    }
  });
}

test('SIGHUP with a handler (a daemon reloading) does not stop', async () => {
  let reloads = 0;
  const life = startLifecycle({ hangup: () => reloads++ });
  try {
    process.emit('SIGHUP', 'SIGHUP');
    process.emit('SIGHUP', 'SIGHUP');
    assert.equal(reloads, 2);
    assert.equal(life.reason, undefined);
    process.emit('SIGQUIT', 'SIGQUIT');
    assert.equal(await life.stopRequested, 'SIGQUIT');
  } finally {
    life.close();
  }
});

test('a second signal during teardown warns; the third forces the exit', async () => {
  const logged: Record<string, unknown>[] = [];
  let forced = 0;
  const life = startLifecycle({ log: (e) => logged.push(e), forceExit: () => forced++ });
  try {
    life.requestStop('worker-died');
    process.emit('SIGQUIT', 'SIGQUIT');
    assert.equal(forced, 0, 'the second request only warns');
    assert.equal(logged.at(-1)!.level, 'warn');
    assert.match(String(logged.at(-1)!.message), /once more to force exit/);
    process.emit('SIGHUP', 'SIGHUP');
    assert.equal(forced, 1);
    assert.equal(await life.stopRequested, 'worker-died');
  } finally {
    life.close();
  }
});

test('close removes every handler; runUntilStopped closes after the body, even when it throws', async () => {
  const before = listeners();
  const life = startLifecycle();
  assert.deepEqual(
    listeners(),
    before.map((n) => n + 1),
  );
  life.close();
  life.close();
  assert.deepEqual(listeners(), before);
  await assert.rejects(
    runUntilStopped({}, async () => {
      assert.deepEqual(
        listeners(),
        before.map((n) => n + 1),
      );
      throw new Error('setup failed');
    }),
    /setup failed/,
  );
  assert.deepEqual(listeners(), before);
});

test('an AbortSignal stops too', async () => {
  const ac = new AbortController();
  const code = await runUntilStopped({ signal: ac.signal }, async (life) => {
    setImmediate(() => ac.abort());
    return (await life.stopRequested) === 'abort' ? 0 : 1;
  });
  assert.equal(code, 0);
});

test('timer options: integers up to 2^31-1 ms, anything else is a usage error', () => {
  assert.equal(parseMillis('--stats-interval', '10', 10), 10);
  assert.equal(parseMillis('--timeout', String(MAX_TIMER_MS)), MAX_TIMER_MS);
  for (const bad of [String(MAX_TIMER_MS + 1), '1e3', '-5', '', '12ms', '9007199254740993', '5']) {
    assert.throws(
      () => parseMillis('--stats-interval', bad, 10),
      (e: { code?: string; message: string }) => e.code === 'ERR_CLI_USAGE' && e.message.startsWith('--stats-interval'),
      bad,
    );
  }
});
