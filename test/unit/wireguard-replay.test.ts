/** The transport replay window (RFC 6479 bitmap, 2048 bits) against a simple model. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REPLAY_OK, REPLAY_SEEN, REPLAY_TOO_OLD, ReplayWindow, WINDOW_SIZE } from '../../src/tunnel/wireguard/replay.ts';

test('in order, duplicates, out of order inside the window, too old', () => {
  const w = new ReplayWindow();
  for (let i = 0; i < 100; i++) assert.equal(w.update(i), REPLAY_OK);
  assert.equal(w.check(50), REPLAY_SEEN);
  assert.equal(w.update(99), REPLAY_SEEN);
  assert.equal(w.update(200), REPLAY_OK);
  assert.equal(w.update(150), REPLAY_OK, 'skipped counter accepted late');
  assert.equal(w.update(150), REPLAY_SEEN);
  assert.equal(w.update(200 + WINDOW_SIZE), REPLAY_OK);
  assert.equal(w.check(200), REPLAY_TOO_OLD, 'exactly WINDOW_SIZE behind');
  assert.equal(w.check(201), REPLAY_OK, 'WINDOW_SIZE − 1 behind, never seen');
  assert.equal(WINDOW_SIZE >= 2000, true);
});

test('check does not record; a huge jump clears the whole ring', () => {
  const w = new ReplayWindow();
  assert.equal(w.check(5), REPLAY_OK);
  assert.equal(w.check(5), REPLAY_OK);
  w.update(5);
  w.update(2 ** 40);
  assert.equal(w.check(2 ** 40 - 1), REPLAY_OK);
  assert.equal(w.check(5), REPLAY_TOO_OLD);
  w.update(2 ** 40 - 1);
  assert.equal(w.check(2 ** 40 - 1), REPLAY_SEEN);
});

test('counters at or beyond the limit (and unreadable ones) are refused', () => {
  const w = new ReplayWindow(1000);
  assert.equal(w.update(999), REPLAY_OK);
  assert.equal(w.check(1000), REPLAY_TOO_OLD);
  assert.equal(new ReplayWindow().check(Infinity), REPLAY_TOO_OLD);
});

test('random sequences agree with a set-based model', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let run = 0; run < 20; run++) {
    const w = new ReplayWindow();
    const seen = new Set<number>();
    let greatest = -1;
    let base = 0;
    for (let i = 0; i < 5000; i++) {
      const r = rnd(100);
      // Mostly near the head, sometimes far back, sometimes a jump forward.
      if (r < 5) base += rnd(5000);
      const c = Math.max(0, r < 10 ? base - rnd(3000) : base + rnd(64) - 32);
      const expected = c > greatest ? REPLAY_OK : greatest - c >= WINDOW_SIZE ? REPLAY_TOO_OLD : seen.has(c) ? REPLAY_SEEN : REPLAY_OK;
      assert.equal(w.update(c), expected, `run ${run} step ${i} counter ${c} greatest ${greatest}`);
      if (expected === REPLAY_OK) {
        seen.add(c);
        greatest = Math.max(greatest, c);
      }
      base++;
    }
  }
});
