/**
 * MAC1, MAC2 and cookies (whitepaper 5.3 and 5.4.7): denial-of-service defence for handshakes.
 *
 *  - mac1 = MAC(HASH("mac1----" ‖ S_pub of the receiver), msg up to mac1): anyone who knows
 *    the receiver's public key can make it; a message without it is dropped before any
 *    Curve25519 work.
 *  - Under load, the responder also wants mac2 = MAC(cookie, msg up to mac2), where
 *    cookie = MAC(R, source address ‖ port) and R is a random secret changed every two minutes.
 *    A message without a valid mac2 gets a cookie reply instead of a handshake:
 *    nonce (24 random bytes) and XAEAD(HASH("cookie--" ‖ S_pub of the responder), nonce,
 *    cookie, the mac1 of the message replied to). The initiator decrypts it (only the real
 *    sender of that mac1 can) and adds mac2 to its messages for the next two minutes.
 *
 * CookieChecker is the receiving side (one per device, keyed by our static key); CookieJar is
 * the sending side (one per peer, keyed by the peer's static key).
 */
import { randomBytes } from 'node:crypto';
import { equalBytes, hash, mac, xaeadOpen, xaeadSeal } from './crypto.ts';
import { blake2sFinal, blake2sInit, blake2sUpdate } from './blake2s.ts';
import {
  COOKIE_NONCE,
  COOKIE_RECEIVER,
  COOKIE_REPLY_LEN,
  COOKIE_SEALED,
  MSG_COOKIE_REPLY,
  writeType,
  writeU32,
  type Endpoint,
} from './messages.ts';

const LABEL_MAC1 = new TextEncoder().encode('mac1----');
const LABEL_COOKIE = new TextEncoder().encode('cookie--');
const COOKIE_LEN = 16;

export function mac1Key(staticPublic: Uint8Array): Uint8Array {
  return hash(LABEL_MAC1, staticPublic);
}

export function cookieKey(staticPublic: Uint8Array): Uint8Array {
  return hash(LABEL_COOKIE, staticPublic);
}

const scratch = new Uint8Array(16);

/** Whether MAC(key, msg[off, off + covered)) equals the 16 bytes at off + covered. */
function verifyMac(key: Uint8Array, msg: Uint8Array, off: number, covered: number): boolean {
  blake2sInit(16, key);
  blake2sUpdate(msg, off, covered);
  blake2sFinal(scratch, 0);
  return equalBytes(scratch, 0, msg, off + covered, 16);
}

export class CookieChecker {
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private secret = new Uint8Array(32);
  private secretAt = -Infinity;
  private readonly input = new Uint8Array(18);
  private readonly cookie = new Uint8Array(16);

  constructor(
    ourPublic: Uint8Array,
    private readonly refreshMs = 120_000,
  ) {
    this.mac1Key = mac1Key(ourPublic);
    this.cookieKey = cookieKey(ourPublic);
  }

  /** mac1 of a handshake message of `len` bytes (mac1 and mac2 are its last 32 bytes). */
  checkMac1(msg: Uint8Array, off: number, len: number): boolean {
    return verifyMac(this.mac1Key, msg, off, len - 32);
  }

  /** mac2 against the cookie of `from` right now. */
  checkMac2(msg: Uint8Array, off: number, len: number, from: Endpoint, now: number): boolean {
    this.makeCookie(from, now);
    return verifyMac(this.cookie, msg, off, len - 16);
  }

  private makeCookie(from: Endpoint, now: number): void {
    if (now - this.secretAt >= this.refreshMs) {
      this.secret = new Uint8Array(randomBytes(32));
      this.secretAt = now;
    }
    const n = from.writeCookieInput(this.input);
    blake2sInit(16, this.secret);
    blake2sUpdate(this.input, 0, n);
    blake2sFinal(this.cookie, 0);
  }

  /**
   * Writes a cookie reply (64 bytes) to the handshake message `msg` (whose sender index is
   * `senderIndex`) into out[outOff...]; returns its length.
   */
  writeReply(
    msg: Uint8Array,
    off: number,
    len: number,
    senderIndex: number,
    from: Endpoint,
    now: number,
    out: Uint8Array,
    outOff: number,
  ): number {
    this.makeCookie(from, now);
    const nonce = new Uint8Array(randomBytes(24));
    const mac1 = msg.subarray(off + len - 32, off + len - 16);
    const sealed = xaeadSeal(this.cookieKey, nonce, this.cookie, mac1);
    writeType(out, outOff, MSG_COOKIE_REPLY);
    writeU32(out, outOff + COOKIE_RECEIVER, senderIndex);
    out.set(nonce, outOff + COOKIE_NONCE);
    out.set(sealed, outOff + COOKIE_SEALED);
    return COOKIE_REPLY_LEN;
  }
}

export class CookieJar {
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private readonly lastMac1 = new Uint8Array(16);
  private hasLastMac1 = false;
  private readonly cookie = new Uint8Array(COOKIE_LEN);
  private cookieAt = -Infinity;

  constructor(
    peerPublic: Uint8Array,
    private readonly lifetimeMs = 120_000,
  ) {
    this.mac1Key = mac1Key(peerPublic);
    this.cookieKey = cookieKey(peerPublic);
  }

  /** Fills mac1 and mac2 (the last 32 bytes) of a handshake message of `len` bytes. */
  addMacs(msg: Uint8Array, off: number, len: number, now: number): void {
    const m1 = mac(this.mac1Key, msg.subarray(off, off + len - 32));
    msg.set(m1, off + len - 32);
    this.lastMac1.set(m1);
    this.hasLastMac1 = true;
    if (now - this.cookieAt < this.lifetimeMs) msg.set(mac(this.cookie, msg.subarray(off, off + len - 16)), off + len - 16);
    else msg.fill(0, off + len - 16, off + len);
  }

  /** Takes the cookie from a reply to our last message; false when it does not decrypt. */
  consumeReply(msg: Uint8Array, off: number, now: number): boolean {
    if (!this.hasLastMac1) return false;
    const cookie = xaeadOpen(
      this.cookieKey,
      msg.subarray(off + COOKIE_NONCE, off + COOKIE_SEALED),
      msg.subarray(off + COOKIE_SEALED, off + COOKIE_REPLY_LEN),
      this.lastMac1,
    );
    if (!cookie) return false;
    this.cookie.set(cookie);
    this.cookieAt = now;
    return true;
  }

  /** Whether a cookie is held (younger than its lifetime). */
  hasCookie(now: number): boolean {
    return now - this.cookieAt < this.lifetimeMs;
  }
}
