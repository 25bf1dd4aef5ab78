/**
 * WireGuard's timers (whitepaper section 6) as a pure state machine over injected time: every
 * deadline is a number of milliseconds on the caller's clock (Infinity when disarmed); events
 * move deadlines, `poll(now)` says what is due (a bit set of TIMER_* actions) and disarms it.
 * The peer executes the actions; the dataplane calls `poll` from its loop (nextDeadline says
 * when it must) — no Node timers, so tests move time by passing a number.
 *
 *  deadline              armed by                                   disarmed by            action
 *  retransmitAt          an initiation sent: REKEY_TIMEOUT + jitter  handshake complete     resend (a retry), or give up
 *                                                                                           after REKEY_ATTEMPT_TIME
 *  keepaliveAt           data received, unless armed: KEEPALIVE      any packet sent        keepalive (passive)
 *  newHandshakeAt        data sent, unless armed: KEEPALIVE +        any packet received    initiation (the peer went
 *                        REKEY_TIMEOUT + jitter                                              quiet: maybe it roamed)
 *  zeroKeysAt            a session derived: 3 × REJECT_AFTER_TIME     (re-armed)             erase every key
 *  persistentAt          any packet sent or received: interval                              keepalive (persistent)
 *
 * Conditions checked on the data path rather than timed (peer.ts): a session we initiated
 * that is REKEY_AFTER_TIME old (or REKEY_AFTER_MESSAGES used) on send, or REJECT_AFTER_TIME −
 * KEEPALIVE_TIMEOUT − REKEY_TIMEOUT old on receive, starts a handshake; no session is used past
 * REJECT_AFTER_TIME; initiations are at least REKEY_TIMEOUT apart (`canInitiate`).
 */

export interface WgTimings {
  rekeyAfterTimeMs: number;
  rejectAfterTimeMs: number;
  rekeyAttemptTimeMs: number;
  rekeyTimeoutMs: number;
  keepaliveTimeoutMs: number;
  /** Upper bound of the random extra delay added to REKEY_TIMEOUT (whitepaper: up to 333 ms). */
  jitterMaxMs: number;
  rekeyAfterMessages: number;
  rejectAfterMessages: number;
  cookieRefreshMs: number;
  /** Initiations accepted from one peer at most this often (flood protection). */
  initiationMinIntervalMs: number;
}

/** The protocol's constants (whitepaper 6.1). */
export const WG_TIMINGS: Readonly<WgTimings> = Object.freeze({
  rekeyAfterTimeMs: 120_000,
  rejectAfterTimeMs: 180_000,
  rekeyAttemptTimeMs: 90_000,
  rekeyTimeoutMs: 5_000,
  keepaliveTimeoutMs: 10_000,
  jitterMaxMs: 333,
  rekeyAfterMessages: 2 ** 60,
  rejectAfterMessages: 2 ** 64 - 2 ** 13 - 1,
  cookieRefreshMs: 120_000,
  initiationMinIntervalMs: 20,
});

export const TIMER_SEND_INITIATION = 1;
/** Set with TIMER_SEND_INITIATION when it is a retransmission (same attempt series). */
export const TIMER_RETRY = 2;
export const TIMER_SEND_KEEPALIVE = 4;
export const TIMER_ZERO_KEYS = 8;
/** REKEY_ATTEMPT_TIME passed without an answer: drop what waits for a session. */
export const TIMER_GIVE_UP = 16;

export class Timers {
  retransmitAt = Infinity;
  keepaliveAt = Infinity;
  newHandshakeAt = Infinity;
  zeroKeysAt = Infinity;
  persistentAt = Infinity;
  /** Retransmissions in the current series of initiations. */
  attempts = 0;
  lastInitiationAt = -Infinity;
  private needAnotherKeepalive = false;
  private readonly maxAttempts: number;

  constructor(
    readonly t: Readonly<WgTimings> = WG_TIMINGS,
    /** Persistent keepalive interval in ms; 0 disables it. */
    public persistentIntervalMs = 0,
    private readonly jitter: () => number = () => Math.random() * t.jitterMaxMs,
  ) {
    this.maxAttempts = Math.ceil(t.rekeyAttemptTimeMs / t.rekeyTimeoutMs) - 1;
  }

  /** Whether an initiation may be sent now (at most one per REKEY_TIMEOUT). */
  canInitiate(now: number): boolean {
    return now - this.lastInitiationAt >= this.t.rekeyTimeoutMs;
  }

  /** An initiation left; `retry` keeps the attempt count, otherwise a new series starts. */
  initiationSent(now: number, retry: boolean): void {
    if (!retry) this.attempts = 0;
    this.lastInitiationAt = now;
    this.retransmitAt = now + this.t.rekeyTimeoutMs + this.jitter();
  }

  /** We initiated and the response arrived: stop retransmitting. */
  handshakeComplete(): void {
    this.retransmitAt = Infinity;
    this.attempts = 0;
  }

  /** New transport keys exist (either role). */
  sessionDerived(now: number): void {
    this.zeroKeysAt = now + 3 * this.t.rejectAfterTimeMs;
  }

  /** A transport packet with a payload (not a keepalive) was sent. */
  dataSent(now: number): void {
    if (this.newHandshakeAt === Infinity) this.newHandshakeAt = now + this.t.keepaliveTimeoutMs + this.t.rekeyTimeoutMs + this.jitter();
  }

  /** A transport packet with a payload was received. */
  dataReceived(now: number): void {
    if (this.keepaliveAt === Infinity) this.keepaliveAt = now + this.t.keepaliveTimeoutMs;
    else this.needAnotherKeepalive = true;
  }

  /** Any authenticated packet (data, keepalive, handshake) was sent. */
  anySent(now: number): void {
    this.keepaliveAt = Infinity;
    this.traversal(now);
  }

  /** Any authenticated packet was received. */
  anyReceived(now: number): void {
    this.newHandshakeAt = Infinity;
    this.traversal(now);
  }

  private traversal(now: number): void {
    if (this.persistentIntervalMs > 0) this.persistentAt = now + this.persistentIntervalMs;
  }

  /** Arms the persistent keepalive right away (a peer configured with one, at start). */
  startPersistent(now: number): void {
    if (this.persistentIntervalMs > 0) this.persistentAt = now;
  }

  /** The earliest armed deadline (Infinity when none). */
  nextDeadline(): number {
    return Math.min(this.retransmitAt, this.keepaliveAt, this.newHandshakeAt, this.zeroKeysAt, this.persistentAt);
  }

  /** What is due at `now`, as TIMER_* bits; due deadlines are disarmed (or re-armed). */
  poll(now: number): number {
    let actions = 0;
    if (now >= this.retransmitAt) {
      this.retransmitAt = Infinity;
      if (this.attempts >= this.maxAttempts) {
        actions |= TIMER_GIVE_UP;
        if (this.zeroKeysAt === Infinity) this.zeroKeysAt = now + 3 * this.t.rejectAfterTimeMs;
      } else {
        this.attempts++;
        actions |= TIMER_SEND_INITIATION | TIMER_RETRY;
      }
    }
    if (now >= this.keepaliveAt) {
      this.keepaliveAt = Infinity;
      actions |= TIMER_SEND_KEEPALIVE;
      if (this.needAnotherKeepalive) {
        this.needAnotherKeepalive = false;
        this.keepaliveAt = now + this.t.keepaliveTimeoutMs;
      }
    }
    if (now >= this.newHandshakeAt) {
      this.newHandshakeAt = Infinity;
      if (!(actions & TIMER_SEND_INITIATION)) actions |= TIMER_SEND_INITIATION;
    }
    if (now >= this.zeroKeysAt) {
      this.zeroKeysAt = Infinity;
      actions |= TIMER_ZERO_KEYS;
    }
    if (now >= this.persistentAt) {
      this.persistentAt = Infinity;
      actions |= TIMER_SEND_KEEPALIVE;
    }
    return actions;
  }

  /**
   * Keys erased: everything disarmed except the persistent keepalive, which keeps trying to
   * reach a peer that went away (its next keepalive starts a handshake).
   */
  reset(): void {
    this.retransmitAt = this.keepaliveAt = this.newHandshakeAt = this.zeroKeysAt = Infinity;
    this.attempts = 0;
    this.needAnotherKeepalive = false;
  }
}
