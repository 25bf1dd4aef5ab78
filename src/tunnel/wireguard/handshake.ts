/**
 * The Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake (whitepaper 5.4.2–5.4.5):
 *
 *   <- s
 *   ...
 *   -> e, es, s, ss, {t}      initiation: ephemeral, encrypted static key, encrypted TAI64N
 *   <- e, ee, se, psk, {}     response: ephemeral, an encrypted empty payload
 *
 * with C (chaining key) and H (hash) both starting from HASH(CONSTRUCTION), then
 * H = HASH(HASH(C ‖ IDENTIFIER) ‖ S_pub of the responder). After the response both sides
 * derive (T_send, T_recv) = KDF2(C, ε), swapped for the responder.
 *
 * Functions here write and read message bodies (everything but mac1/mac2, which cookie.ts
 * adds and checks) and keep the per-peer state between the two messages. Handshakes are rare
 * (one per two minutes per peer, plus attacks, which mac1/cookies filter first): these
 * functions allocate freely.
 */
import type { KeyObject } from 'node:crypto';
import { aeadOpen, aeadSeal, hash, kdf1, kdf2, kdf3, x25519, x25519Generate, x25519PrivateKey } from './crypto.ts';
import {
  INIT_EPHEMERAL,
  INIT_SENDER,
  INIT_STATIC,
  INIT_TIMESTAMP,
  MSG_INITIATION,
  MSG_RESPONSE,
  RESP_EMPTY,
  RESP_EPHEMERAL,
  RESP_RECEIVER,
  RESP_SENDER,
  readU32,
  writeType,
  writeU32,
} from './messages.ts';

const CONSTRUCTION = new TextEncoder().encode('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s');
const IDENTIFIER = new TextEncoder().encode('WireGuard v1 zx2c4 Jason@zx2c4.com');
const EMPTY = new Uint8Array(0);
const ZERO_PSK = new Uint8Array(32);

/** C0 = HASH(CONSTRUCTION), H0 = HASH(C0 ‖ IDENTIFIER): the same for every handshake. */
const C0 = hash(CONSTRUCTION);
const H0 = hash(C0, IDENTIFIER);

/** Our static identity: the private key, its public key, and the KeyObject for DH. */
export class StaticIdentity {
  readonly publicKey: Uint8Array;
  readonly privateObject: KeyObject;
  constructor(
    readonly privateKey: Uint8Array,
    publicKey: Uint8Array,
  ) {
    this.publicKey = publicKey;
    this.privateObject = x25519PrivateKey(privateKey);
  }
}

export const HS_NONE = 0;
export const HS_INITIATION_SENT = 1;
export const HS_INITIATION_CONSUMED = 2;
export const HS_RESPONSE_SENT = 3;

/** Per-peer handshake state (whitepaper: the "handshake" of a peer). */
export class HandshakeState {
  state = HS_NONE;
  chainingKey: Uint8Array = C0;
  hash: Uint8Array = H0;
  ephemeralPrivate: Uint8Array | undefined;
  remoteEphemeral: Uint8Array | undefined;
  /** Our index for this handshake (it becomes the new session's receiving index). */
  localIndex = 0;
  /** The other side's index (it becomes the new session's sending index). */
  remoteIndex = 0;
  /** The greatest TAI64N seen in an accepted initiation from this peer. */
  readonly lastTimestamp = new Uint8Array(12);
  /** When (caller's clock) the last initiation from this peer was accepted. */
  lastInitiationConsumedAt = -Infinity;
  /** DH(S_priv of ours, S_pub of the peer), computed once; undefined for a low-order key. */
  readonly staticStatic: Uint8Array | undefined;
  /** HASH(H0 ‖ S_pub of the responder) for our initiations to this peer. */
  readonly initHash: Uint8Array;

  /** Q in the whitepaper: the pre-shared key, or 32 zero bytes (a copy: erased with the peer). */
  readonly presharedKey: Uint8Array;

  constructor(
    readonly local: StaticIdentity,
    readonly remoteStatic: Uint8Array,
    presharedKey: Uint8Array = ZERO_PSK,
  ) {
    if (presharedKey.length !== 32) throw new RangeError('pre-shared key must be 32 bytes');
    this.presharedKey = new Uint8Array(presharedKey);
    this.staticStatic = x25519(local.privateObject, remoteStatic);
    this.initHash = hash(H0, remoteStatic);
  }

  clear(): void {
    this.state = HS_NONE;
    this.chainingKey = C0;
    this.hash = H0;
    this.ephemeralPrivate = undefined;
    this.remoteEphemeral = undefined;
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

/**
 * Writes the body of an initiation (bytes 0..116) into out[off...] and moves `hs` to
 * HS_INITIATION_SENT. Returns false when the peer's key is unusable (low order).
 */
export function writeInitiation(hs: HandshakeState, localIndex: number, timestamp: Uint8Array, out: Uint8Array, off: number): boolean {
  if (!hs.staticStatic) return false;
  const e = x25519Generate();
  let c = kdf1(C0, e.publicKey);
  let h = hash(hs.initHash, e.publicKey);
  writeType(out, off, MSG_INITIATION);
  writeU32(out, off + INIT_SENDER, localIndex);
  out.set(e.publicKey, off + INIT_EPHEMERAL);
  const es = x25519(e.privateKey, hs.remoteStatic);
  if (!es) return false;
  let k: Uint8Array;
  [c, k] = kdf2(c, es);
  const encStatic = aeadSeal(k, 0, hs.local.publicKey, h);
  out.set(encStatic, off + INIT_STATIC);
  h = hash(h, encStatic);
  [c, k] = kdf2(c, hs.staticStatic);
  const encTime = aeadSeal(k, 0, timestamp, h);
  out.set(encTime, off + INIT_TIMESTAMP);
  h = hash(h, encTime);
  hs.chainingKey = c;
  hs.hash = h;
  hs.ephemeralPrivate = e.privateKey;
  hs.localIndex = localIndex;
  hs.remoteIndex = 0;
  hs.state = HS_INITIATION_SENT;
  return true;
}

/** An initiation decrypted up to the static key: who claims to send it. */
export interface InitiationIdentity {
  remoteStatic: Uint8Array;
  senderIndex: number;
  remoteEphemeral: Uint8Array;
  chainingKey: Uint8Array;
  hash: Uint8Array;
}

/**
 * First half of consuming an initiation (mac1 already checked): decrypts the initiator's static
 * key. Undefined when it does not decrypt (not for us, or corrupted).
 */
export function openInitiation(local: StaticIdentity, msg: Uint8Array, off: number): InitiationIdentity | undefined {
  const ephemeral = msg.slice(off + INIT_EPHEMERAL, off + INIT_STATIC);
  let c = kdf1(C0, ephemeral);
  let h = hash(hash(H0, local.publicKey), ephemeral);
  const es = x25519(local.privateObject, ephemeral);
  if (!es) return undefined;
  let k: Uint8Array;
  [c, k] = kdf2(c, es);
  const encStatic = msg.subarray(off + INIT_STATIC, off + INIT_TIMESTAMP);
  const remoteStatic = aeadOpen(k, 0, encStatic, h);
  if (!remoteStatic) return undefined;
  h = hash(h, encStatic);
  return { remoteStatic, senderIndex: readU32(msg, off + INIT_SENDER), remoteEphemeral: ephemeral, chainingKey: c, hash: h };
}

/**
 * Second half, with the peer found by its static key: decrypts the timestamp. Returns it
 * (12 bytes) with the state to commit, or undefined when it does not decrypt. Nothing is
 * written to `hs`: the caller checks the timestamp and the flood limit first, then commits.
 */
export function openInitiationTimestamp(
  hs: HandshakeState,
  id: InitiationIdentity,
  msg: Uint8Array,
  off: number,
): { timestamp: Uint8Array; chainingKey: Uint8Array; hash: Uint8Array } | undefined {
  if (!hs.staticStatic) return undefined;
  const [c, k] = kdf2(id.chainingKey, hs.staticStatic);
  const encTime = msg.subarray(off + INIT_TIMESTAMP, off + INIT_TIMESTAMP + 28);
  const timestamp = aeadOpen(k, 0, encTime, id.hash);
  if (!timestamp) return undefined;
  return { timestamp, chainingKey: c, hash: hash(id.hash, encTime) };
}

/** Commits an accepted initiation to the peer's state (HS_INITIATION_CONSUMED). */
export function acceptInitiation(
  hs: HandshakeState,
  id: InitiationIdentity,
  opened: { timestamp: Uint8Array; chainingKey: Uint8Array; hash: Uint8Array },
  now: number,
): void {
  hs.lastTimestamp.set(opened.timestamp);
  hs.lastInitiationConsumedAt = now;
  hs.chainingKey = opened.chainingKey;
  hs.hash = opened.hash;
  hs.remoteEphemeral = id.remoteEphemeral;
  hs.remoteIndex = id.senderIndex;
  hs.ephemeralPrivate = undefined;
  hs.state = HS_INITIATION_CONSUMED;
}

/** Writes the body of a response (bytes 0..60); `hs` moves to HS_RESPONSE_SENT. */
export function writeResponse(hs: HandshakeState, localIndex: number, out: Uint8Array, off: number): boolean {
  if (hs.state !== HS_INITIATION_CONSUMED || !hs.remoteEphemeral) return false;
  const e = x25519Generate();
  let c = kdf1(hs.chainingKey, e.publicKey);
  let h = hash(hs.hash, e.publicKey);
  writeType(out, off, MSG_RESPONSE);
  writeU32(out, off + RESP_SENDER, localIndex);
  writeU32(out, off + RESP_RECEIVER, hs.remoteIndex);
  out.set(e.publicKey, off + RESP_EPHEMERAL);
  const ee = x25519(e.privateKey, hs.remoteEphemeral);
  const se = x25519(e.privateKey, hs.remoteStatic);
  if (!ee || !se) return false;
  c = kdf1(c, ee);
  c = kdf1(c, se);
  const [c2, tau, k] = kdf3(c, hs.presharedKey);
  h = hash(h, tau);
  const empty = aeadSeal(k, 0, EMPTY, h);
  out.set(empty, off + RESP_EMPTY);
  h = hash(h, empty);
  hs.chainingKey = c2;
  hs.hash = h;
  hs.localIndex = localIndex;
  hs.state = HS_RESPONSE_SENT;
  return true;
}

/**
 * Consumes a response to our initiation (mac1 checked, receiver index matched to `hs`).
 * Returns false when it does not authenticate; on success `hs` holds the final chaining key.
 */
export function consumeResponse(hs: HandshakeState, msg: Uint8Array, off: number): boolean {
  if (hs.state !== HS_INITIATION_SENT || !hs.ephemeralPrivate) return false;
  const ephemeral = msg.slice(off + RESP_EPHEMERAL, off + RESP_EMPTY);
  let c = kdf1(hs.chainingKey, ephemeral);
  let h = hash(hs.hash, ephemeral);
  const ee = x25519(hs.ephemeralPrivate, ephemeral);
  const se = x25519(hs.local.privateObject, ephemeral);
  if (!ee || !se) return false;
  c = kdf1(c, ee);
  c = kdf1(c, se);
  const [c2, tau, k] = kdf3(c, hs.presharedKey);
  h = hash(h, tau);
  const empty = msg.subarray(off + RESP_EMPTY, off + RESP_EMPTY + 16);
  if (!aeadOpen(k, 0, empty, h)) return false;
  hs.chainingKey = c2;
  hs.hash = hash(h, empty);
  hs.remoteIndex = readU32(msg, off + RESP_SENDER);
  hs.remoteEphemeral = ephemeral;
  return true;
}

/**
 * The transport keys of a finished handshake: (send, receive) for `initiator`, and the state
 * cleared (the whitepaper erases C, H and the ephemeral keys).
 */
export function deriveTransportKeys(hs: HandshakeState, initiator: boolean): { send: Uint8Array; recv: Uint8Array } {
  const [t1, t2] = kdf2(hs.chainingKey, EMPTY);
  return initiator ? { send: t1, recv: t2 } : { send: t2, recv: t1 };
}
