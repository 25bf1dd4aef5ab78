/**
 * WireGuard timers as a pure state machine (src/tunnel/wireguard/timers.ts) and as peers run
 * them (device.tick with an injected clock): retransmission with jitter and giving up after
 * REKEY_ATTEMPT_TIME, passive and persistent keepalives, a new handshake when the peer goes
 * quiet, keys erased after 3 × REJECT_AFTER_TIME.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TIMER_GIVE_UP,
  TIMER_RETRY,
  TIMER_SEND_INITIATION,
  TIMER_SEND_KEEPALIVE,
  TIMER_ZERO_KEYS,
  Timers,
  WG_TIMINGS,
} from '../../src/tunnel/wireguard/timers.ts';
import { Pair, ipv4Packet } from '../support/wg-pair.ts';
import { INITIATION_LEN } from '../../src/tunnel/wireguard/messages.ts';

test('retransmission: REKEY_TIMEOUT + jitter, a retry each time, give up after REKEY_ATTEMPT_TIME', () => {
  const t = new Timers(WG_TIMINGS, 0, () => 100);
  assert.equal(t.canInitiate(0), true);
  t.initiationSent(0, false);
  assert.equal(t.canInitiate(4_999), false);
  assert.equal(t.nextDeadline(), 5_100);
  assert.equal(t.poll(5_099), 0);
  let now = 5_100;
  let sent = 1;
  for (;;) {
    const a = t.poll(now);
    if (a & TIMER_GIVE_UP) break;
    assert.equal(a, TIMER_SEND_INITIATION | TIMER_RETRY);
    t.initiationSent(now, true);
    sent++;
    now += 5_100;
  }
  assert.equal(sent, 18, 'REKEY_ATTEMPT_TIME / REKEY_TIMEOUT initiations');
  assert.ok(now - 5_100 >= WG_TIMINGS.rekeyAttemptTimeMs - 5_100);
  assert.equal(t.nextDeadline(), now + 3 * WG_TIMINGS.rejectAfterTimeMs, 'keys erased later');
  // A new series starts counting again.
  t.initiationSent(now, false);
  assert.equal(t.attempts, 0);
  t.handshakeComplete();
  assert.equal(t.retransmitAt, Infinity);
});

test('jitter stays within REKEY_TIMEOUT .. REKEY_TIMEOUT + 333 ms by default', () => {
  const t = new Timers();
  for (let i = 0; i < 100; i++) {
    t.initiationSent(1000, false);
    assert.ok(t.retransmitAt >= 6_000 && t.retransmitAt < 6_333);
  }
});

test('passive keepalive after KEEPALIVE_TIMEOUT; cancelled by anything sent; re-armed when needed', () => {
  const t = new Timers(WG_TIMINGS, 0, () => 0);
  t.dataReceived(0);
  assert.equal(t.poll(9_999), 0);
  assert.equal(t.poll(10_000), TIMER_SEND_KEEPALIVE);
  t.dataReceived(20_000);
  t.anySent(20_001);
  assert.equal(t.poll(40_000), 0, 'a reply went out: no keepalive');
  t.dataReceived(50_000);
  t.dataReceived(51_000);
  assert.equal(t.poll(60_000), TIMER_SEND_KEEPALIVE);
  assert.equal(t.keepaliveAt, 70_000, 'more data arrived meanwhile: another one');
});

test('new handshake when data sent gets no answer for KEEPALIVE + REKEY_TIMEOUT + jitter', () => {
  const t = new Timers(WG_TIMINGS, 0, () => 50);
  t.dataSent(0);
  t.dataSent(3_000);
  assert.equal(t.newHandshakeAt, 15_050, 'armed once, by the first packet');
  assert.equal(t.poll(15_049), 0);
  assert.equal(t.poll(15_050), TIMER_SEND_INITIATION);
  t.dataSent(20_000);
  t.anyReceived(21_000);
  assert.equal(t.poll(60_000), 0);
});

test('zero keys after 3 × REJECT_AFTER_TIME; persistent keepalive every interval', () => {
  const t = new Timers(WG_TIMINGS, 25_000, () => 0);
  t.sessionDerived(0);
  t.anySent(0);
  assert.equal(t.poll(24_999), 0);
  assert.equal(t.poll(25_000), TIMER_SEND_KEEPALIVE);
  t.anyReceived(30_000);
  assert.equal(t.persistentAt, 55_000);
  assert.equal(t.poll(540_000) & TIMER_ZERO_KEYS, TIMER_ZERO_KEYS);
  t.reset();
  assert.equal(t.nextDeadline(), t.persistentAt, 'only the persistent keepalive survives');
  t.persistentIntervalMs = 0;
  t.persistentAt = Infinity;
  t.reset();
  assert.equal(t.nextDeadline(), Infinity);
});

test('peer: an unanswered initiation is retransmitted until REKEY_ATTEMPT_TIME, then waiting packets go', () => {
  const p = new Pair();
  p.a.encrypt(p.ab, ipv4Packet(60), 0);
  const staged = (): number => p.ab.stagedCount;
  assert.equal(staged(), 1);
  let now = 0;
  while (now < 100_000) {
    now = Math.min(p.a.device.nextDeadline(), now + 200_000);
    p.at(now);
    p.a.device.tick(now);
    if (staged() === 0) break;
  }
  assert.equal(p.ab.initiationsSent, 18);
  assert.equal(p.a.outbox.length, 18);
  assert.ok(p.a.outbox.every((d) => d.bytes.length === INITIATION_LEN));
  assert.ok(now >= 90_000 && now < 100_000, `gave up at ${now}`);
  // A late answer to the last initiation still completes the handshake; answers to the earlier
  // ones find their indices freed.
  const first = p.a.outbox[0]!;
  const last = p.a.outbox[17]!;
  p.a.outbox.length = 0;
  p.b.receive(first, now);
  p.b.receive(last, now + 100);
  const [r1, r2] = p.b.outbox.splice(0);
  assert.equal(p.a.receive(r1!, now + 100).reason, 8, 'unknown_receiver_index');
  assert.equal(p.a.receive(r2!, now + 100).action, 2);
  assert.ok(p.ab.keypairs.current);
});

test('peer: persistent keepalive starts the handshake at once, then keeps the path warm', () => {
  const p = new Pair({ keepaliveA: 25 });
  p.a.device.tick(0);
  assert.equal(p.ab.initiationsSent, 1);
  p.flush(0);
  assert.ok(p.ab.keypairs.current);
  const k0 = p.ab.keepalivesSent;
  p.at(24_000);
  p.a.device.tick(24_000);
  assert.equal(p.ab.keepalivesSent, k0);
  p.at(25_000);
  p.a.device.tick(25_000);
  assert.equal(p.ab.keepalivesSent, k0 + 1);
  assert.equal(p.flush(25_000)[0]!.action, 2);
  assert.equal(p.ba.keepalivesReceived, 2, 'the confirming keepalive and the persistent one');
});

test('peer: passive keepalive from the receiver of data; new handshake from a sender left unanswered', () => {
  const p = new Pair();
  p.ab.handshakeInitiation(0);
  p.flush(0);
  const m = p.a.encrypt(p.ab, ipv4Packet(60), 1)!;
  p.b.receive({ bytes: m, from: p.a.addr, to: p.b.addr }, 1);
  p.b.device.tick(10_000);
  assert.equal(p.ba.keepalivesSent, 0);
  p.b.device.tick(10_001);
  assert.equal(p.ba.keepalivesSent, 1);
  // A sent data at t=1 and B's keepalive never arrives: A starts a handshake at 15 s + jitter.
  p.b.outbox.length = 0;
  p.at(15_167);
  p.a.device.tick(15_167);
  assert.equal(p.ab.initiationsSent, 1, 'not yet: jitter is 166.5 ms with random() = 0.5');
  p.a.device.tick(15_168);
  assert.equal(p.ab.initiationsSent, 2);
});

test('peer: keys erased 3 × REJECT_AFTER_TIME after the last handshake; indices freed', () => {
  const p = new Pair();
  p.ab.handshakeInitiation(0);
  p.flush(0);
  assert.equal(p.a.device.indexCount, 1);
  p.a.device.tick(540_000);
  assert.equal(p.ab.keypairs.current, null);
  assert.equal(p.a.device.indexCount, 0);
  p.b.device.tick(540_000);
  assert.equal(p.ba.keypairs.current, null);
  assert.equal(p.b.device.indexCount, 0);
});
