/**
 * A WireGuard device: our static key, its peers, the index table, and the entry points the
 * data path calls. Pure protocol: no sockets and no clock of its own. The caller passes every
 * received datagram to `consume`, every outgoing IP packet to `peer.encrypt`, and calls `tick`
 * when `nextDeadline()` comes; control messages (handshake, cookie reply, keepalive, packets
 * that waited for a session) leave through the `WgOutput` it supplies.
 *
 * Hot path (transport data, both directions): no allocation. `consume` decrypts in place
 * (plaintext at offset + 16) and fills a caller-owned ConsumeResult; `encrypt` expects the IP
 * packet at `off` with 16 bytes of headroom before it and 31 bytes of tailroom after it, and
 * turns it into the message in place (it starts at off − 16). Index lookups are one Map.get
 * on a small integer: indices are random in [1, 2^30), small integers for V8.
 *
 * Every drop has a reason, counted in `drops` (a Float64Array by DROP_* code).
 */
import { randomInt } from 'node:crypto';
import { NodeAead, type DataAead } from './crypto.ts';
import { CookieChecker, CookieJar } from './cookie.ts';
import {
  HS_INITIATION_SENT,
  HandshakeState,
  StaticIdentity,
  acceptInitiation,
  consumeResponse,
  deriveTransportKeys,
  openInitiation,
  openInitiationTimestamp,
  writeInitiation,
  writeResponse,
} from './handshake.ts';
import {
  COOKIE_RECEIVER,
  COOKIE_REPLY_LEN,
  DATA_COUNTER,
  DATA_PAYLOAD,
  DATA_RECEIVER,
  Endpoint,
  INITIATION_LEN,
  INIT_SENDER,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  MSG_TRANSPORT,
  RESPONSE_LEN,
  RESP_RECEIVER,
  RESP_SENDER,
  TRANSPORT_HEADER_LEN,
  TRANSPORT_MIN_LEN,
  compareTai64n,
  messageType,
  readCounter,
  writeCounter,
  writeTai64n,
  writeType,
  writeU32,
} from './messages.ts';
import { REPLAY_OK, REPLAY_SEEN } from './replay.ts';
import { Keypair, KeypairSet } from './session.ts';
import {
  TIMER_GIVE_UP,
  TIMER_RETRY,
  TIMER_SEND_INITIATION,
  TIMER_SEND_KEEPALIVE,
  TIMER_ZERO_KEYS,
  Timers,
  WG_TIMINGS,
  type WgTimings,
} from './timers.ts';
import { x25519Public } from './crypto.ts';
import { encodeKey } from './keys.ts';
import { doubleFields } from '../../util/double-fields.ts';

// --- results of consume ---

/** A decrypted IP packet: res.peer, at res.offset, res.length bytes. */
export const WG_DELIVER = 1;
/** A protocol message was consumed (handshake, cookie, keepalive); replies went to the output. */
export const WG_HANDLED = 2;
/** Dropped: res.reason is a DROP_* code (counted in device.drops). */
export const WG_DROP = 3;

export const DROP_TRUNCATED = 0;
export const DROP_UNKNOWN_TYPE = 1;
export const DROP_BAD_MAC1 = 2;
export const DROP_UNDER_LOAD = 3;
export const DROP_UNKNOWN_PEER = 4;
export const DROP_HANDSHAKE_FAILED = 5;
export const DROP_STALE_TIMESTAMP = 6;
export const DROP_FLOOD = 7;
export const DROP_UNKNOWN_INDEX = 8;
export const DROP_UNEXPECTED = 9;
export const DROP_BAD_COOKIE = 10;
export const DROP_EXPIRED = 11;
export const DROP_REPLAYED = 12;
export const DROP_OUT_OF_WINDOW = 13;
export const DROP_DECRYPT = 14;
export const DROP_BAD_INNER = 15;
/** Outgoing: no session yet and the waiting queue is full (or the peer has no endpoint). */
export const DROP_NO_SESSION = 16;
/** Outgoing: the packet does not fit the buffer's headroom/tailroom. */
export const DROP_NO_ROOM = 17;

/** Metric-friendly names, indexed by DROP_* code. */
export const DROP_REASONS: readonly string[] = Object.freeze([
  'truncated',
  'unknown_type',
  'bad_mac1',
  'under_load_no_cookie',
  'unknown_peer',
  'handshake_failed',
  'stale_timestamp',
  'initiation_flood',
  'unknown_receiver_index',
  'unexpected_message',
  'bad_cookie_reply',
  'session_expired',
  'replayed',
  'out_of_window',
  'decrypt_failed',
  'bad_inner_packet',
  'no_session',
  'no_room',
]);

/** Filled by Device.consume; one per caller, reused for every datagram. */
export class ConsumeResult {
  peer: Peer | null = null;
  offset = 0;
  length = 0;
  reason = -1;
}

/**
 * Where control messages leave. `send` must copy (or transmit) the bytes before it returns:
 * the device reuses its buffer for the next message. `peer` is null for a cookie reply to an
 * initiation (the sender is not known yet).
 */
export interface WgOutput {
  send(buf: Uint8Array, off: number, len: number, to: Endpoint, peer: Peer | null): void;
}

export interface DeviceOptions {
  privateKey: Uint8Array;
  output: WgOutput;
  /** The data path AEAD (default: node:crypto; the dataplane passes SodiumAead). */
  aead?: DataAead;
  timings?: Partial<WgTimings>;
  /** Wall clock in ms since the Unix epoch, for TAI64N timestamps (default Date.now). */
  wallClock?: () => number;
  /** Uniform [0, 1), for timer jitter (default Math.random). */
  random?: () => number;
  /**
   * Handshake messages per second above which the device is "under load" and requires mac2
   * (answering cookie replies instead of doing Curve25519). Default 128.
   */
  loadThreshold?: number;
}

export interface PeerOptions {
  publicKey: Uint8Array;
  presharedKey?: Uint8Array;
  endpoint?: Endpoint;
  /** Seconds; 0 or absent disables. */
  persistentKeepalive?: number;
  /**
   * Largest IP packet the tunnel carries to an IPv4 / IPv6 endpoint (the uplink MTU less the outer
   * headers): padding stops there, as the kernel's WireGuard pads only up to its MTU, so a packet
   * of that size still fits the uplink. Absent: no limit (padding to 16 bytes always).
   */
  maxPacket4?: number;
  maxPacket6?: number;
}

/** An index table entry: a handshake in progress (keypair null) or a session. */
class IndexEntry {
  constructor(
    readonly peer: Peer,
    public keypair: Keypair | null,
  ) {}
}

const MAX_STAGED = 16;
const SCRATCH = 2048 + 64;

export class Device {
  readonly publicKey: Uint8Array;
  readonly identity: StaticIdentity;
  readonly timings: Readonly<WgTimings>;
  readonly drops = new Float64Array(DROP_REASONS.length);
  cookieRepliesSent = 0;
  /** Forces "under load" (tests, or a dataplane that sees its queues filling). */
  forceUnderLoad = false;
  readonly aead: DataAead;
  readonly output: WgOutput;
  readonly wallClock: () => number;
  readonly random: () => number;
  private readonly cookies: CookieChecker;
  private readonly index = new Map<number, IndexEntry>();
  private readonly byKey = new Map<string, Peer>();
  /** Control messages are built here (off-heap, so any AEAD backend can use it). */
  readonly scratch = new Uint8Array(new ArrayBuffer(SCRATCH));
  private readonly loadThreshold: number;
  private loadWindowAt = -Infinity;
  private loadCount = 0;
  private underLoadUntil = -Infinity;

  constructor(opts: DeviceOptions) {
    this.publicKey = x25519Public(opts.privateKey);
    this.identity = new StaticIdentity(opts.privateKey, this.publicKey);
    this.timings = Object.freeze({ ...WG_TIMINGS, ...opts.timings });
    this.aead = opts.aead ?? new NodeAead();
    this.output = opts.output;
    this.wallClock = opts.wallClock ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.loadThreshold = opts.loadThreshold ?? 128;
    this.cookies = new CookieChecker(this.publicKey, this.timings.cookieRefreshMs);
  }

  get peers(): readonly Peer[] {
    return [...this.byKey.values()];
  }

  addPeer(opts: PeerOptions): Peer {
    const k = encodeKey(opts.publicKey);
    if (this.byKey.has(k)) throw new RangeError('peer already added');
    const p = new Peer(this, opts);
    this.byKey.set(k, p);
    return p;
  }

  removePeer(p: Peer): void {
    p.zeroKeys();
    this.byKey.delete(encodeKey(p.publicKey));
  }

  peerByKey(publicKey: Uint8Array): Peer | undefined {
    return this.byKey.get(encodeKey(publicKey));
  }

  /** Whether handshakes must carry a valid mac2 right now. */
  underLoad(now: number): boolean {
    return this.forceUnderLoad || now < this.underLoadUntil;
  }

  private countHandshake(now: number): void {
    if (now - this.loadWindowAt >= 1000) {
      this.loadWindowAt = now;
      this.loadCount = 0;
    }
    if (++this.loadCount > this.loadThreshold) this.underLoadUntil = now + 1000;
  }

  // --- index table ---

  /** @internal */
  allocIndex(entryPeer: Peer, kp: Keypair | null): number {
    for (;;) {
      const i = randomInt(1, 0x40000000);
      if (!this.index.has(i)) {
        this.index.set(i, new IndexEntry(entryPeer, kp));
        return i;
      }
    }
  }

  /** @internal */
  bindIndex(i: number, kp: Keypair): void {
    const e = this.index.get(i);
    if (e) e.keypair = kp;
  }

  /** @internal */
  freeIndex(i: number): void {
    if (i !== 0) this.index.delete(i);
  }

  /** @internal Frees `i` if it still belongs to a handshake (no session took it over). */
  freeHandshakeIndex(i: number): void {
    if (i !== 0 && this.index.get(i)?.keypair === null) this.index.delete(i);
  }

  /** The number of live indices (handshakes and sessions), for tests and status. */
  get indexCount(): number {
    return this.index.size;
  }

  // --- receive ---

  private drop(res: ConsumeResult, reason: number): number {
    this.drops[reason]!++;
    res.reason = reason;
    return WG_DROP;
  }

  /**
   * Consumes one received datagram `buf[off, off + len)` from `from` at `now`. Returns
   * WG_DELIVER, WG_HANDLED or WG_DROP, with details in `res`.
   */
  consume(buf: Uint8Array, off: number, len: number, from: Endpoint, now: number, res: ConsumeResult): number {
    res.peer = null;
    res.reason = -1;
    res.offset = 0;
    res.length = 0;
    if (len < 4) return this.drop(res, DROP_TRUNCATED);
    const type = messageType(buf, off);
    if (type === MSG_TRANSPORT) return this.consumeTransport(buf, off, len, from, now, res);
    if (type === MSG_INITIATION) return this.consumeInitiation(buf, off, len, from, now, res);
    if (type === MSG_RESPONSE) return this.consumeResponse(buf, off, len, from, now, res);
    if (type === MSG_COOKIE_REPLY) return this.consumeCookie(buf, off, len, now, res);
    return this.drop(res, DROP_UNKNOWN_TYPE);
  }

  private consumeTransport(buf: Uint8Array, off: number, len: number, from: Endpoint, now: number, res: ConsumeResult): number {
    if (len < TRANSPORT_MIN_LEN) return this.drop(res, DROP_TRUNCATED);
    const idx =
      buf[off + DATA_RECEIVER]! |
      (buf[off + DATA_RECEIVER + 1]! << 8) |
      (buf[off + DATA_RECEIVER + 2]! << 16) |
      (buf[off + DATA_RECEIVER + 3]! << 24);
    const e = this.index.get(idx);
    const kp = e === undefined ? null : e.keypair;
    if (e === undefined || kp === null) return this.drop(res, DROP_UNKNOWN_INDEX);
    const peer = e.peer;
    res.peer = peer;
    if (now - kp.createdAt >= this.timings.rejectAfterTimeMs) return this.drop(res, DROP_EXPIRED);
    const counter = readCounter(buf, off + DATA_COUNTER);
    const r = kp.replay.check(counter);
    if (r !== REPLAY_OK) return this.drop(res, r === REPLAY_SEEN ? DROP_REPLAYED : DROP_OUT_OF_WINDOW);
    const n = this.aead.open(kp.recvKey, counter, buf, off + DATA_PAYLOAD, len - DATA_PAYLOAD, buf, off + DATA_PAYLOAD);
    if (n < 0) return this.drop(res, DROP_DECRYPT);
    if (kp.replay.update(counter) !== REPLAY_OK) return this.drop(res, DROP_REPLAYED);
    // Authenticated from here on.
    if (kp === peer.keypairs.next) peer.confirmNext(now);
    if (peer.endpoint === null) peer.endpoint = new Endpoint();
    if (!peer.endpoint.equals(from)) peer.endpoint.copyFrom(from);
    peer.rxPackets++;
    peer.rxBytes += len;
    peer.timers.anyReceived(now);
    if (
      kp.initiator &&
      now - kp.createdAt >= this.timings.rejectAfterTimeMs - this.timings.keepaliveTimeoutMs - this.timings.rekeyTimeoutMs &&
      kp === peer.keypairs.current
    )
      peer.handshakeInitiation(now);
    if (n === 0) {
      peer.keepalivesReceived++;
      return WG_HANDLED;
    }
    peer.timers.dataReceived(now);
    // The payload is zero-padded to 16 bytes: the IP header says how long the packet is.
    const p = off + DATA_PAYLOAD;
    const version = buf[p]! >> 4;
    let ipLen = -1;
    if (version === 4 && n >= 20) ipLen = (buf[p + 2]! << 8) | buf[p + 3]!;
    else if (version === 6 && n >= 40) ipLen = 40 + ((buf[p + 4]! << 8) | buf[p + 5]!);
    if (ipLen < 20 || ipLen > n) return this.drop(res, DROP_BAD_INNER);
    res.offset = p;
    res.length = ipLen;
    return WG_DELIVER;
  }

  /** mac1, then (under load) mac2: false with the drop recorded, or a cookie reply sent. */
  private admitHandshake(
    buf: Uint8Array,
    off: number,
    len: number,
    senderIndex: number,
    from: Endpoint,
    now: number,
    res: ConsumeResult,
    peer: Peer | null,
  ): boolean {
    if (!this.cookies.checkMac1(buf, off, len)) {
      this.drop(res, DROP_BAD_MAC1);
      return false;
    }
    this.countHandshake(now);
    if (this.underLoad(now) && !this.cookies.checkMac2(buf, off, len, from, now)) {
      const n = this.cookies.writeReply(buf, off, len, senderIndex, from, now, this.scratch, 0);
      this.cookieRepliesSent++;
      this.output.send(this.scratch, 0, n, from, peer);
      this.drop(res, DROP_UNDER_LOAD);
      return false;
    }
    return true;
  }

  private consumeInitiation(buf: Uint8Array, off: number, len: number, from: Endpoint, now: number, res: ConsumeResult): number {
    if (len !== INITIATION_LEN) return this.drop(res, DROP_TRUNCATED);
    const sender = readIndex(buf, off + INIT_SENDER);
    if (!this.admitHandshake(buf, off, len, sender, from, now, res, null)) return WG_DROP;
    const id = openInitiation(this.identity, buf, off);
    if (!id) return this.drop(res, DROP_HANDSHAKE_FAILED);
    const peer = this.byKey.get(encodeKey(id.remoteStatic));
    if (!peer) return this.drop(res, DROP_UNKNOWN_PEER);
    res.peer = peer;
    const opened = openInitiationTimestamp(peer.hs, id, buf, off);
    if (!opened) return this.drop(res, DROP_HANDSHAKE_FAILED);
    if (compareTai64n(opened.timestamp, peer.hs.lastTimestamp) <= 0) return this.drop(res, DROP_STALE_TIMESTAMP);
    if (now - peer.hs.lastInitiationConsumedAt < this.timings.initiationMinIntervalMs) return this.drop(res, DROP_FLOOD);
    // Accepted: an initiation of ours in flight is abandoned (its index freed).
    this.freeHandshakeIndex(peer.hs.localIndex);
    acceptInitiation(peer.hs, id, opened, now);
    peer.timers.anyReceived(now);
    if (peer.endpoint === null) peer.endpoint = new Endpoint();
    if (!peer.endpoint.equals(from)) peer.endpoint.copyFrom(from);
    peer.respond(now);
    return WG_HANDLED;
  }

  private consumeResponse(buf: Uint8Array, off: number, len: number, from: Endpoint, now: number, res: ConsumeResult): number {
    if (len !== RESPONSE_LEN) return this.drop(res, DROP_TRUNCATED);
    const sender = readIndex(buf, off + RESP_SENDER);
    const e = this.index.get(readIndex(buf, off + RESP_RECEIVER));
    if (!this.admitHandshake(buf, off, len, sender, from, now, res, e ? e.peer : null)) return WG_DROP;
    if (!e) return this.drop(res, DROP_UNKNOWN_INDEX);
    const peer = e.peer;
    res.peer = peer;
    if (e.keypair !== null || peer.hs.state !== HS_INITIATION_SENT || peer.hs.localIndex !== readIndex(buf, off + RESP_RECEIVER))
      return this.drop(res, DROP_UNEXPECTED);
    if (!consumeResponse(peer.hs, buf, off)) return this.drop(res, DROP_HANDSHAKE_FAILED);
    peer.timers.anyReceived(now);
    if (peer.endpoint === null) peer.endpoint = new Endpoint();
    if (!peer.endpoint.equals(from)) peer.endpoint.copyFrom(from);
    peer.completeAsInitiator(now);
    return WG_HANDLED;
  }

  private consumeCookie(buf: Uint8Array, off: number, len: number, now: number, res: ConsumeResult): number {
    if (len !== COOKIE_REPLY_LEN) return this.drop(res, DROP_TRUNCATED);
    const e = this.index.get(readIndex(buf, off + COOKIE_RECEIVER));
    if (!e) return this.drop(res, DROP_UNKNOWN_INDEX);
    res.peer = e.peer;
    if (!e.peer.cookies.consumeReply(buf, off, now)) return this.drop(res, DROP_BAD_COOKIE);
    e.peer.cookieRepliesReceived++;
    return WG_HANDLED;
  }

  // --- timers ---

  /** Runs every peer's due timers. Returns the next deadline (Infinity when none). */
  tick(now: number): number {
    let next = Infinity;
    for (const p of this.byKey.values()) next = Math.min(next, p.tick(now));
    return next;
  }

  /** The earliest deadline of any peer's timers. */
  nextDeadline(): number {
    let next = Infinity;
    for (const p of this.byKey.values()) next = Math.min(next, p.timers.nextDeadline());
    return next;
  }
}

function readIndex(b: Uint8Array, off: number): number {
  return b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24);
}

/** One remote peer: its handshake, sessions, timers, cookie jar and counters. */
export class Peer {
  readonly publicKey: Uint8Array;
  /** Where to send; learned from authenticated packets (roaming) when not configured. */
  endpoint: Endpoint | null;
  readonly hs: HandshakeState;
  readonly cookies: CookieJar;
  readonly keypairs = new KeypairSet();
  readonly timers: Timers;
  rxPackets = 0;
  rxBytes = 0;
  txPackets = 0;
  txBytes = 0;
  keepalivesReceived = 0;
  keepalivesSent = 0;
  initiationsSent = 0;
  responsesSent = 0;
  handshakesCompleted = 0;
  cookieRepliesReceived = 0;
  /** Wall clock (ms) of the last completed handshake, 0 when none. */
  lastHandshakeWallMs = 0;
  private readonly staged: Uint8Array[] = [];
  private readonly dropped: Keypair[] = [];
  private readonly maxPacket4: number;
  private readonly maxPacket6: number;

  constructor(
    private readonly dev: Device,
    opts: PeerOptions,
  ) {
    if (opts.publicKey.length !== 32) throw new RangeError('peer public key must be 32 bytes');
    this.publicKey = new Uint8Array(opts.publicKey);
    this.endpoint = null;
    if (opts.endpoint) {
      this.endpoint = new Endpoint();
      this.endpoint.copyFrom(opts.endpoint);
    }
    this.maxPacket4 = opts.maxPacket4 ?? Infinity;
    this.maxPacket6 = opts.maxPacket6 ?? Infinity;
    this.hs = new HandshakeState(dev.identity, this.publicKey, opts.presharedKey);
    this.cookies = new CookieJar(this.publicKey, dev.timings.cookieRefreshMs);
    const t = dev.timings;
    this.timers = new Timers(t, (opts.persistentKeepalive ?? 0) * 1000, () => dev.random() * t.jitterMaxMs);
    if (this.timers.persistentIntervalMs > 0) this.timers.persistentAt = -Infinity;
    doubleFields(this, 'rxPackets', 'rxBytes', 'txPackets', 'txBytes');
  }

  /** Packets waiting for a session. */
  get stagedCount(): number {
    return this.staged.length;
  }

  /**
   * Sends a handshake initiation now, unless one left less than REKEY_TIMEOUT ago (`retry`:
   * a retransmission by the timer, same series). Returns whether one was sent.
   */
  handshakeInitiation(now: number, retry = false): boolean {
    if (!retry && !this.timers.canInitiate(now)) return false;
    if (this.endpoint === null) return false;
    const d = this.dev;
    d.freeHandshakeIndex(this.hs.localIndex);
    this.hs.clear();
    const idx = d.allocIndex(this, null);
    const ts = new Uint8Array(12);
    writeTai64n(ts, 0, d.wallClock());
    const out = d.scratch;
    if (!writeInitiation(this.hs, idx, ts, out, 0)) {
      d.freeIndex(idx);
      this.hs.clear();
      return false;
    }
    this.cookies.addMacs(out, 0, INITIATION_LEN, now);
    this.timers.initiationSent(now, retry);
    this.timers.anySent(now);
    this.initiationsSent++;
    d.output.send(out, 0, INITIATION_LEN, this.endpoint, this);
    return true;
  }

  /** @internal An initiation was accepted: answer it and derive the responder's session. */
  respond(now: number): void {
    const d = this.dev;
    const idx = d.allocIndex(this, null);
    const out = d.scratch;
    if (!writeResponse(this.hs, idx, out, 0)) {
      d.freeIndex(idx);
      this.hs.clear();
      return;
    }
    this.cookies.addMacs(out, 0, RESPONSE_LEN, now);
    const keys = deriveTransportKeys(this.hs, false);
    const kp = new Keypair(keys.send, keys.recv, idx, this.hs.remoteIndex, false, now, d.timings.rejectAfterMessages);
    d.bindIndex(idx, kp);
    this.hs.clear();
    this.install(kp);
    this.timers.sessionDerived(now);
    this.timers.anySent(now);
    this.responsesSent++;
    this.handshakesCompleted++;
    this.lastHandshakeWallMs = d.wallClock();
    d.output.send(out, 0, RESPONSE_LEN, this.endpoint!, this);
  }

  /** @internal Our initiation was answered: the new session becomes current. */
  completeAsInitiator(now: number): void {
    const d = this.dev;
    const keys = deriveTransportKeys(this.hs, true);
    const kp = new Keypair(keys.send, keys.recv, this.hs.localIndex, this.hs.remoteIndex, true, now, d.timings.rejectAfterMessages);
    d.bindIndex(this.hs.localIndex, kp);
    this.hs.clear();
    this.install(kp);
    this.timers.handshakeComplete();
    this.timers.sessionDerived(now);
    this.handshakesCompleted++;
    this.lastHandshakeWallMs = d.wallClock();
    // Confirm the session to the responder: with waiting packets, or a keepalive.
    if (this.staged.length > 0) this.flushStaged(now);
    else this.sendKeepalive(now);
  }

  /** @internal The responder's session was confirmed by the initiator's first packet. */
  confirmNext(now: number): void {
    const old = this.keypairs.confirmNext();
    if (old) this.discard(old);
    if (this.staged.length > 0) this.flushStaged(now);
  }

  private install(kp: Keypair): void {
    this.keypairs.install(kp, this.dropped);
    for (let i = 0; i < this.dropped.length; i++) this.discard(this.dropped[i]!);
    this.dropped.length = 0;
  }

  private discard(kp: Keypair): void {
    this.dev.freeIndex(kp.localIndex);
    kp.erase();
  }

  /** Erases every session and the handshake, and drops waiting packets. */
  zeroKeys(): void {
    this.keypairs.clear(this.dropped);
    for (let i = 0; i < this.dropped.length; i++) this.discard(this.dropped[i]!);
    this.dropped.length = 0;
    this.dev.freeHandshakeIndex(this.hs.localIndex);
    this.hs.clear();
    this.staged.length = 0;
    this.timers.reset();
  }

  /** The session to send with, or null (none, too old, or out of messages). */
  private sendingKeypair(now: number): Keypair | null {
    const kp = this.keypairs.current;
    if (kp === null) return null;
    const t = this.dev.timings;
    if (now - kp.createdAt >= t.rejectAfterTimeMs || kp.sendCounter >= t.rejectAfterMessages) return null;
    return kp;
  }

  /**
   * Encrypts the IP packet at buf[off, off + len) in place into a transport message that
   * starts at off − 16 (header), padded to 16 bytes, tag after it. Needs off ≥ 16 and 31
   * bytes after the packet. Returns the message length, or −1 when it was not sent: no session
   * (the packet is copied to a small queue and a handshake starts; it leaves through the
   * output once the session exists) or no room (DROP_NO_ROOM counted).
   */
  encrypt(buf: Uint8Array, off: number, len: number, now: number): number {
    const padded = this.paddedLength(len);
    if (off < TRANSPORT_HEADER_LEN || off + padded + 16 > buf.length) {
      this.dev.drops[DROP_NO_ROOM]!++;
      return -1;
    }
    const kp = this.sendingKeypair(now);
    if (kp === null || this.endpoint === null) {
      this.stage(buf, off, len, now);
      return -1;
    }
    const n = this.seal(kp, buf, off, len, padded, now);
    const t = this.dev.timings;
    if (kp.initiator && (now - kp.createdAt >= t.rekeyAfterTimeMs || kp.sendCounter >= t.rekeyAfterMessages)) this.handshakeInitiation(now);
    return n;
  }

  /**
   * A packet's length zero-padded to 16 bytes (the IP header says how long the packet is), but
   * not past the largest packet the endpoint's family carries (PeerOptions.maxPacket4/6).
   */
  private paddedLength(len: number): number {
    const padded = (len + 15) & ~15;
    const max = this.endpoint !== null && this.endpoint.family === 6 ? this.maxPacket6 : this.maxPacket4;
    return padded <= max ? padded : len > max ? len : max;
  }

  private seal(kp: Keypair, buf: Uint8Array, off: number, len: number, padded: number, now: number): number {
    const h = off - TRANSPORT_HEADER_LEN;
    const counter = kp.sendCounter++;
    writeType(buf, h, MSG_TRANSPORT);
    writeU32(buf, h + DATA_RECEIVER, kp.remoteIndex);
    writeCounter(buf, h + DATA_COUNTER, counter);
    for (let i = off + len; i < off + padded; i++) buf[i] = 0;
    this.dev.aead.seal(kp.sendKey, counter, buf, off, padded, buf, off);
    const n = TRANSPORT_HEADER_LEN + padded + 16;
    this.txPackets++;
    this.txBytes += n;
    if (len > 0) this.timers.dataSent(now);
    this.timers.anySent(now);
    return n;
  }

  private stage(buf: Uint8Array, off: number, len: number, now: number): void {
    if (this.staged.length >= MAX_STAGED) this.staged.shift();
    this.staged.push(buf.slice(off, off + len));
    // A fresh responder session will be confirmed by the initiator within a round trip.
    const next = this.keypairs.next;
    if (next !== null && now - next.createdAt < this.dev.timings.rekeyTimeoutMs) return;
    this.handshakeInitiation(now);
  }

  private flushStaged(now: number): void {
    const kp = this.sendingKeypair(now);
    if (kp === null || this.endpoint === null) return;
    const out = this.dev.scratch;
    while (this.staged.length > 0) {
      const p = this.staged.shift()!;
      if (p.length + 16 + 31 > out.length) continue;
      out.set(p, TRANSPORT_HEADER_LEN);
      const n = this.seal(kp, out, TRANSPORT_HEADER_LEN, p.length, this.paddedLength(p.length), now);
      this.dev.output.send(out, 0, n, this.endpoint, this);
    }
  }

  /** Sends a keepalive (an empty transport message), or starts a handshake without a session. */
  sendKeepalive(now: number): void {
    const kp = this.sendingKeypair(now);
    if (kp === null || this.endpoint === null) {
      this.handshakeInitiation(now);
      return;
    }
    const out = this.dev.scratch;
    const n = this.seal(kp, out, TRANSPORT_HEADER_LEN, 0, 0, now);
    this.keepalivesSent++;
    this.dev.output.send(out, 0, n, this.endpoint, this);
  }

  /** Runs due timers; returns this peer's next deadline. */
  tick(now: number): number {
    const a = this.timers.poll(now);
    if (a !== 0) {
      if (a & TIMER_ZERO_KEYS) this.zeroKeys();
      if (a & TIMER_GIVE_UP) this.staged.length = 0;
      if (a & TIMER_SEND_INITIATION) this.handshakeInitiation(now, (a & TIMER_RETRY) !== 0);
      if (a & TIMER_SEND_KEEPALIVE) this.sendKeepalive(now);
    }
    return this.timers.nextDeadline();
  }
}
