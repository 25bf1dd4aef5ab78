/**
 * The WireGuard protocol core between two in-memory devices (test/support/wg-pair.ts): message
 * layouts, handshakes (with and without a pre-shared key, both AEAD backends), the responder's
 * wait for confirmation, key rotation, every counted drop reason, cookies under load, roaming.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pair, Side, ipv4Packet, type Datagram } from '../support/wg-pair.ts';
import {
  DROP_BAD_COOKIE,
  DROP_BAD_INNER,
  DROP_BAD_MAC1,
  DROP_DECRYPT,
  DROP_EXPIRED,
  DROP_FLOOD,
  DROP_NO_ROOM,
  DROP_OUT_OF_WINDOW,
  DROP_REPLAYED,
  DROP_STALE_TIMESTAMP,
  DROP_TRUNCATED,
  DROP_UNDER_LOAD,
  DROP_UNEXPECTED,
  DROP_UNKNOWN_INDEX,
  DROP_UNKNOWN_PEER,
  DROP_UNKNOWN_TYPE,
  WG_DELIVER,
  WG_DROP,
  WG_HANDLED,
} from '../../src/tunnel/wireguard/device.ts';
import {
  COOKIE_REPLY_LEN,
  Endpoint,
  INITIATION_LEN,
  RESPONSE_LEN,
  compareTai64n,
  readCounter,
  writeCounter,
  writeTai64n,
} from '../../src/tunnel/wireguard/messages.ts';
import { NodeAead } from '../../src/tunnel/wireguard/crypto.ts';
import { SodiumAead } from '../../src/sys/sodium.ts';

const sizes = (log: { datagram: Datagram }[]): number[] => log.map((d) => d.datagram.bytes.length);
const dg = (bytes: Uint8Array, from: Endpoint, to: Endpoint): Datagram => ({ bytes, from, to });

/** A pair with a session: A initiated, B confirmed by A's keepalive. */
function established(opts: ConstructorParameters<typeof Pair>[0] = {}, now = 0): Pair {
  const p = new Pair(opts);
  p.at(now);
  assert.equal(p.ab.handshakeInitiation(now), true);
  const log = p.flush(now);
  assert.deepEqual(sizes(log), [INITIATION_LEN, RESPONSE_LEN, 32], 'initiation, response, keepalive');
  assert.deepEqual(
    log.map((d) => d.action),
    [WG_HANDLED, WG_HANDLED, WG_HANDLED],
  );
  return p;
}

test('padding stops at the largest packet the tunnel carries (maxPacket4: the uplink MTU less the outer headers), as the kernel pads only to its MTU', () => {
  // 1440 = 1500 − 60 (IPv4 20, UDP 8, WireGuard header 16 and tag 16).
  const p = established({ maxPacket4A: 1440 });
  for (const [len, padded] of [
    [1400, 1408],
    [1425, 1440],
    [1433, 1440],
    [1440, 1440],
  ] as const) {
    const pkt = ipv4Packet(len, len & 0xff);
    const m = p.a.encrypt(p.ab, pkt, 1)!;
    assert.equal(m.length, 16 + padded + 16, `${len} bytes padded to ${padded}`);
    assert.ok(20 + 8 + m.length <= 1500, 'the outer packet fits the MTU');
    const r = p.b.receive(dg(m, p.a.addr, p.b.addr), 1);
    assert.equal(r.action, WG_DELIVER);
    assert.deepEqual(r.payload, pkt);
  }
});

for (const [name, aead] of [
  ['node:crypto', () => new NodeAead()],
  ['libsodium', () => new SodiumAead()],
] as const) {
  test(`handshake and data both ways (${name} AEAD), with and without a pre-shared key`, () => {
    for (const psk of [undefined, new Uint8Array(32).fill(9)]) {
      const p = established({ psk, aead: aead() });
      assert.ok(p.ab.keypairs.current?.initiator);
      assert.ok(p.ba.keypairs.current && !p.ba.keypairs.current.initiator, 'responder confirmed by the keepalive');
      assert.equal(p.ab.keypairs.current!.remoteIndex, p.ba.keypairs.current!.localIndex);
      for (const len of [20, 21, 64, 1400]) {
        const pkt = ipv4Packet(len, len & 0xff);
        const m = p.a.encrypt(p.ab, pkt, 1)!;
        assert.equal(m.length, 16 + Math.ceil(len / 16) * 16 + 16, 'padded to 16');
        const r = p.b.receive(dg(m, p.a.addr, p.b.addr), 1);
        assert.equal(r.action, WG_DELIVER);
        assert.equal(r.peer, p.ba);
        assert.deepEqual(r.payload, pkt);
        const back = p.b.encrypt(p.ba, pkt, 1)!;
        assert.deepEqual(p.a.receive(dg(back, p.b.addr, p.a.addr), 1).payload, pkt);
      }
    }
  });
}

test('mismatched pre-shared keys: the initiator rejects the response', () => {
  const p = new Pair({ psk: new Uint8Array(32).fill(1) });
  p.ba.hs['presharedKey'].fill(2);
  p.ab.handshakeInitiation(0);
  const log = p.flush(0);
  assert.deepEqual(sizes(log), [INITIATION_LEN, RESPONSE_LEN]);
  assert.equal(log[1]!.action, WG_DROP);
  assert.equal(p.a.device.drops[5], 1, 'handshake_failed');
  assert.equal(p.ab.keypairs.current, null);
});

test('message layouts: type bytes, sizes, indices; TAI64N grows with the clock', () => {
  const p = new Pair();
  p.ab.handshakeInitiation(0);
  const init = p.a.outbox[0]!.bytes;
  assert.deepEqual([...init.subarray(0, 4)], [1, 0, 0, 0]);
  assert.equal(init.length, 148);
  assert.deepEqual([...init.subarray(132, 148)], new Array(16).fill(0), 'no cookie: mac2 is zero');
  p.flush(0);
  const t1 = new Uint8Array(12);
  const t2 = new Uint8Array(12);
  writeTai64n(t1, 0, 1_700_000_000_000);
  writeTai64n(t2, 0, 1_700_000_000_020);
  assert.ok(compareTai64n(t2, t1) > 0);
  assert.equal(t1[0], 0x40, 'TAI64 label: 2^62 + seconds');
  const c = new Uint8Array(8);
  writeCounter(c, 0, 2 ** 40 + 5);
  assert.equal(readCounter(c, 0), 2 ** 40 + 5);
  c[7] = 0xff;
  assert.equal(readCounter(c, 0), Infinity);
  assert.equal(Endpoint.parseHostPort('[2001:db8::1]:51820').toString(), '[2001:db8::1]:51820');
  assert.equal(Endpoint.parseHostPort('198.18.0.9:1').toString(), '198.18.0.9:1');
});

test('the responder stages packets until the initiator confirms the session', () => {
  const p = new Pair();
  p.ab.handshakeInitiation(0);
  // Deliver the initiation only: B has a "next" session and must not send with it.
  const init = p.a.outbox.shift()!;
  assert.equal(p.b.receive(init, 0).action, WG_HANDLED);
  assert.ok(p.ba.keypairs.next && !p.ba.keypairs.current);
  const pkt = ipv4Packet(60);
  assert.equal(p.b.encrypt(p.ba, pkt, 1), undefined, 'staged');
  assert.equal(p.ba.stagedCount, 1);
  assert.equal(p.b.outbox.length, 1, 'only the response went out (no new initiation)');
  const log = p.flush(2);
  // Response → A; A's keepalive → B confirms next and flushes the staged packet → A.
  assert.deepEqual(sizes(log), [RESPONSE_LEN, 32, 16 + 64 + 16]);
  assert.equal(log[2]!.action, WG_DELIVER);
  assert.deepEqual(log[2]!.payload, pkt);
  assert.equal(p.ba.stagedCount, 0);
});

test('a packet sent before any session waits, the handshake starts, and it leaves after', () => {
  const p = new Pair();
  const pkt = ipv4Packet(100);
  assert.equal(p.a.encrypt(p.ab, pkt, 0), undefined);
  assert.equal(p.ab.initiationsSent, 1);
  const log = p.flush(0);
  assert.deepEqual(sizes(log), [INITIATION_LEN, RESPONSE_LEN, 16 + 112 + 16]);
  assert.deepEqual(log[2]!.payload, pkt);
});

test('rekey after REKEY_AFTER_TIME (initiator, on send); the previous session still decrypts', () => {
  const p = established();
  const old = p.ab.keypairs.current!;
  // A packet encrypted by B on the old session, delivered after the rekey.
  const late = p.b.encrypt(p.ba, ipv4Packet(40), 1)!;
  const t = p.at(120_001);
  const m = p.a.encrypt(p.ab, ipv4Packet(40), t)!;
  assert.ok(m, 'still sent on the old session');
  assert.equal(p.ab.initiationsSent, 2, 'and a handshake started');
  p.b.receive(dg(m, p.a.addr, p.b.addr), t);
  p.flush(t);
  assert.notEqual(p.ab.keypairs.current, old);
  assert.equal(p.ab.keypairs.previous, old);
  assert.equal(p.a.receive(dg(late, p.b.addr, p.a.addr), t).action, WG_DELIVER, 'in flight across the rekey');
  // The new session works both ways.
  const n = p.a.encrypt(p.ab, ipv4Packet(40), t)!;
  assert.equal(p.b.receive(dg(n, p.a.addr, p.b.addr), t).action, WG_DELIVER);
  assert.equal(p.ba.keypairs.current!.localIndex, p.ab.keypairs.current!.remoteIndex);
});

test('the responder never rekeys on time; the initiator rekeys on receive near REJECT_AFTER_TIME', () => {
  const p = established();
  const t = p.at(130_000);
  const m = p.b.encrypt(p.ba, ipv4Packet(40), t)!;
  assert.ok(m);
  assert.equal(p.ba.initiationsSent, 0);
  p.at(166_000);
  p.a.receive(dg(p.b.encrypt(p.ba, ipv4Packet(40), 166_000)!, p.b.addr, p.a.addr), 166_000);
  assert.equal(p.ab.initiationsSent, 2, 'REJECT_AFTER_TIME − KEEPALIVE_TIMEOUT − REKEY_TIMEOUT passed');
});

test('sessions expire after REJECT_AFTER_TIME: not used to send, received packets dropped', () => {
  const p = established();
  const m = p.b.encrypt(p.ba, ipv4Packet(40), 0)!;
  const t = p.at(180_000);
  const r = p.a.receive(dg(m, p.b.addr, p.a.addr), t);
  assert.deepEqual([r.action, r.reason], [WG_DROP, DROP_EXPIRED]);
  assert.equal(p.b.encrypt(p.ba, ipv4Packet(40), t), undefined, 'staged, not sent on an expired session');
});

test('drop reasons: truncated, unknown type, unknown index, replayed, out of window, forged, bad inner packet', () => {
  const p = established();
  const A = p.a.addr;
  const B = p.b.addr;
  const drop = (bytes: Uint8Array): number => {
    const r = p.b.receive(dg(bytes, A, B), 1);
    assert.equal(r.action, WG_DROP);
    return r.reason;
  };
  assert.equal(drop(new Uint8Array([4, 0, 0])), DROP_TRUNCATED);
  assert.equal(drop(new Uint8Array(31).fill(0).fill(4, 0, 1)), DROP_TRUNCATED);
  assert.equal(drop(new Uint8Array([5, 0, 0, 0, 1, 2, 3, 4])), DROP_UNKNOWN_TYPE);
  assert.equal(drop(new Uint8Array([4, 1, 0, 0, 1, 2, 3, 4])), DROP_UNKNOWN_TYPE, 'reserved bytes must be zero');
  const m = p.a.encrypt(p.ab, ipv4Packet(40), 1)!;
  const wrongIndex = m.slice();
  wrongIndex[4]! ^= 0xff;
  assert.equal(drop(wrongIndex), DROP_UNKNOWN_INDEX);
  assert.equal(p.b.receive(dg(m, A, B), 1).action, WG_DELIVER);
  assert.equal(drop(m), DROP_REPLAYED);
  const forged = m.slice();
  forged[8] = 200; // an unseen counter
  assert.equal(drop(forged), DROP_DECRYPT);
  const forged2 = p.a.encrypt(p.ab, ipv4Packet(40), 1)!;
  forged2[30]! ^= 1;
  assert.equal(drop(forged2), DROP_DECRYPT);
  // Far ahead then far behind.
  const kp = p.ab.keypairs.current!;
  kp.sendCounter = 5000;
  assert.equal(p.b.receive(dg(p.a.encrypt(p.ab, ipv4Packet(40), 1)!, A, B), 1).action, WG_DELIVER);
  kp.sendCounter = 10;
  assert.equal(drop(p.a.encrypt(p.ab, ipv4Packet(40), 1)!), DROP_OUT_OF_WINDOW);
  // Not an IP packet inside (the session is genuine).
  kp.sendCounter = 5001;
  const junk = new Uint8Array(30).fill(0x11);
  assert.equal(drop(p.a.encrypt(p.ab, junk, 1)!), DROP_BAD_INNER);
  const drops = p.b.device.drops;
  assert.deepEqual(
    [
      drops[DROP_TRUNCATED],
      drops[DROP_UNKNOWN_TYPE],
      drops[DROP_UNKNOWN_INDEX],
      drops[DROP_REPLAYED],
      drops[DROP_DECRYPT],
      drops[DROP_OUT_OF_WINDOW],
      drops[DROP_BAD_INNER],
    ],
    [2, 2, 1, 1, 2, 1, 1],
  );
});

test('a message sealed with another session key (wrong key) is a decrypt drop', () => {
  const p = established();
  const q = established();
  // q's A encrypts to the index p's B knows: same index, different key.
  const kp = q.ab.keypairs.current!;
  Object.defineProperty(kp, 'remoteIndex', { value: p.ba.keypairs.current!.localIndex });
  const m = q.a.encrypt(q.ab, ipv4Packet(40), 1)!;
  const r = p.b.receive(dg(m, p.a.addr, p.b.addr), 1);
  assert.deepEqual([r.action, r.reason], [WG_DROP, DROP_DECRYPT]);
});

test('initiations: bad mac1, unknown peer, replayed (stale timestamp), flood, unexpected response', () => {
  const p = new Pair();
  p.ab.handshakeInitiation(0);
  const init = p.a.outbox.shift()!;
  const bad = { ...init, bytes: init.bytes.slice() };
  bad.bytes[120]! ^= 1;
  assert.equal(p.b.receive(bad, 0).reason, DROP_BAD_MAC1);
  const body = { ...init, bytes: init.bytes.slice() };
  body.bytes[50]! ^= 1; // inside the encrypted static: mac1 no longer matches either
  assert.equal(p.b.receive(body, 0).reason, DROP_BAD_MAC1);
  assert.equal(p.b.receive(init, 0).action, WG_HANDLED);
  const response = p.b.outbox.shift()!;
  assert.equal(p.b.receive(init, 1000).reason, DROP_STALE_TIMESTAMP, 'replayed initiation');
  // A newer initiation, but 10 ms after the last accepted one: flood.
  p.a.wallMs += 5000;
  p.ab.handshakeInitiation(5000);
  const init2 = p.a.outbox.shift()!;
  assert.equal(p.b.receive(init2, 10).reason, DROP_FLOOD);
  // Unknown peer: a third device with B's public key in its config, but B does not know it.
  const c = new Side('c', '198.18.0.3');
  c.device.addPeer({ publicKey: p.b.device.publicKey, endpoint: p.b.addr });
  c.device.peers[0]!.handshakeInitiation(0);
  assert.equal(p.b.receive(c.outbox.shift()!, 2000).reason, DROP_UNKNOWN_PEER);
  // The response to A's first initiation, which A already replaced with a newer one.
  assert.equal(p.a.receive(response, 5000).reason, DROP_UNKNOWN_INDEX);
  // A response arriving twice: the second is unexpected.
  const q = new Pair();
  q.ab.handshakeInitiation(0);
  q.b.receive(q.a.outbox.shift()!, 0);
  const resp = q.b.outbox.shift()!;
  assert.equal(q.a.receive(resp, 0).action, WG_HANDLED);
  assert.equal(q.a.receive(resp, 0).reason, DROP_UNEXPECTED);
  assert.equal(q.a.receive({ ...resp, bytes: resp.bytes.subarray(0, 91) }, 0).reason, DROP_TRUNCATED);
});

test('under load: cookie reply, then the retransmitted initiation carries mac2 and succeeds', () => {
  const p = new Pair();
  p.b.device.forceUnderLoad = true;
  p.ab.handshakeInitiation(0);
  let log = p.flush(0);
  assert.deepEqual(sizes(log), [INITIATION_LEN, COOKIE_REPLY_LEN]);
  assert.deepEqual([log[0]!.action, log[0]!.reason], [WG_DROP, DROP_UNDER_LOAD]);
  assert.equal(log[1]!.action, WG_HANDLED);
  assert.equal(p.ab.cookieRepliesReceived, 1);
  assert.equal(p.b.device.cookieRepliesSent, 1);
  assert.equal(p.ab.keypairs.current, null);
  // The retransmit timer resends with mac2 (REKEY_TIMEOUT + jitter; random() is 0.5 here).
  const t = p.at(5_167);
  p.a.device.tick(t);
  const again = p.a.outbox[0]!.bytes;
  assert.notDeepEqual([...again.subarray(132, 148)], new Array(16).fill(0), 'mac2 present');
  log = p.flush(t);
  assert.deepEqual(sizes(log), [INITIATION_LEN, RESPONSE_LEN, 32]);
  assert.ok(p.ab.keypairs.current && p.ba.keypairs.current);
  // A cookie from another source address does not pass: mac2 is bound to the address.
  const q = new Pair();
  q.b.device.forceUnderLoad = true;
  q.ab.handshakeInitiation(0);
  q.flush(0);
  q.at(5_167);
  q.a.device.tick(5_167);
  const moved = q.b.receive(q.a.outbox.shift()!, 5_167, Endpoint.parse('198.18.0.77', 51820));
  assert.deepEqual([moved.action, moved.reason], [WG_DROP, DROP_UNDER_LOAD]);
});

test('a flood of initiations from spoofed sources gets cookies and does not disturb a session', () => {
  const p = established();
  const attacker = new Side('x', '198.18.0.66');
  attacker.device.addPeer({ publicKey: p.b.device.publicKey, endpoint: p.b.addr });
  const atk = attacker.device.peers[0]!;
  const bLoad = p.b.device;
  const before = p.ba.keypairs.current;
  let cookies = 0;
  for (let i = 0; i < 300; i++) {
    attacker.wallMs += 10_000;
    atk.handshakeInitiation(i * 10_000, true);
    const m = attacker.outbox.shift()!;
    const spoofed = Endpoint.parse(`198.18.${1 + (i >> 8)}.${i & 0xff}`, 40000 + i);
    const r = p.b.receive(m, 1 + i / 1000, spoofed);
    if (r.reason === DROP_UNDER_LOAD) cookies++;
    // Meanwhile the real session carries traffic.
    const d = p.a.encrypt(p.ab, ipv4Packet(100), 1)!;
    assert.equal(p.b.receive(dg(d, p.a.addr, p.b.addr), 1 + i / 1000).action, WG_DELIVER);
  }
  assert.ok(bLoad.underLoad(1.3), 'the handshake rate put B under load');
  assert.ok(cookies >= 300 - 128 - 1, `cookie replies once under load (${cookies})`);
  assert.equal(bLoad.cookieRepliesSent, cookies);
  assert.equal(p.ba.keypairs.current, before, 'the session was not touched');
  assert.equal(p.b.outbox.filter((d) => d.bytes.length === COOKIE_REPLY_LEN).length, cookies);
});

test('a cookie reply that does not decrypt is dropped', () => {
  const p = new Pair();
  p.b.device.forceUnderLoad = true;
  p.ab.handshakeInitiation(0);
  p.b.receive(p.a.outbox.shift()!, 0);
  const reply = p.b.outbox.shift()!;
  const bad = { ...reply, bytes: reply.bytes.slice() };
  bad.bytes[40]! ^= 1;
  assert.equal(p.a.receive(bad, 0).reason, DROP_BAD_COOKIE);
  assert.equal(p.a.receive(reply, 0).action, WG_HANDLED);
});

test('roaming: authenticated packets from a new address move the endpoint; forged ones do not', () => {
  const p = established();
  const moved = Endpoint.parse('198.18.5.5', 1234);
  const m = p.a.encrypt(p.ab, ipv4Packet(40), 1)!;
  const forged = m.slice();
  forged[8] = 77;
  p.b.receive(dg(forged, moved, p.b.addr), 1, moved);
  assert.equal(p.ba.endpoint!.toString(), '198.18.0.1:51820');
  p.b.receive(dg(m, moved, p.b.addr), 1, moved);
  assert.equal(p.ba.endpoint!.toString(), '198.18.5.5:1234');
  p.b.encrypt(p.ba, ipv4Packet(40), 1);
});

test('encrypt refuses buffers without headroom/tailroom (counted)', () => {
  const p = established();
  const buf = new Uint8Array(100);
  assert.equal(p.ab.encrypt(buf, 8, 40, 1), -1);
  assert.equal(p.ab.encrypt(buf, 16, 70, 1), -1);
  assert.equal(p.a.device.drops[DROP_NO_ROOM], 2);
});
