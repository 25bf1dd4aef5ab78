/**
 * Transport sessions ("keypairs") and their rotation (whitepaper 5.4.6 and 6).
 *
 * A peer holds up to three: `current` (used to send), `previous` (still accepted on receive,
 * for packets in flight across a rekey) and `next` (a session we derived as responder; we may
 * not send with it until the initiator proves it has it, by sending us something with it).
 *
 *   initiator, response consumed:  previous ← current (or the unconfirmed next), current ← new
 *   responder, initiation taken:   next ← new, previous dropped
 *   responder, first packet on next: previous ← current, current ← next
 *
 * Each session has its own receiving index (registered in the device's index table), the
 * peer's index to send to, the send counter and the receive replay window.
 */
import { ReplayWindow } from './replay.ts';

export class Keypair {
  sendCounter = 0;
  readonly replay: ReplayWindow;

  constructor(
    readonly sendKey: Uint8Array,
    readonly recvKey: Uint8Array,
    readonly localIndex: number,
    readonly remoteIndex: number,
    readonly initiator: boolean,
    /** When it was derived (caller's clock, ms). */
    readonly createdAt: number,
    rejectAfterMessages?: number,
  ) {
    this.replay = new ReplayWindow(rejectAfterMessages);
  }

  /** Erases the keys (whitepaper: keys are zeroed when discarded). */
  erase(): void {
    this.sendKey.fill(0);
    this.recvKey.fill(0);
  }
}

export class KeypairSet {
  previous: Keypair | null = null;
  current: Keypair | null = null;
  next: Keypair | null = null;

  /**
   * Installs a new session; returns the sessions it displaced (to unregister and erase).
   */
  install(kp: Keypair, dropped: Keypair[]): void {
    if (kp.initiator) {
      if (this.next) {
        // An unconfirmed responder session loses to ours but may still carry packets in flight.
        if (this.previous) dropped.push(this.previous);
        this.previous = this.next;
        this.next = null;
        if (this.current) dropped.push(this.current);
      } else {
        if (this.previous) dropped.push(this.previous);
        this.previous = this.current;
      }
      this.current = kp;
    } else {
      if (this.next) dropped.push(this.next);
      if (this.previous) dropped.push(this.previous);
      this.next = kp;
      this.previous = null;
    }
  }

  /** The first packet arrived on `next`: it becomes current. Returns the dropped previous. */
  confirmNext(): Keypair | null {
    const dropped = this.previous;
    this.previous = this.current;
    this.current = this.next;
    this.next = null;
    return dropped;
  }

  /** All sessions, for erasing. */
  clear(dropped: Keypair[]): void {
    if (this.previous) dropped.push(this.previous);
    if (this.current) dropped.push(this.current);
    if (this.next) dropped.push(this.next);
    this.previous = this.current = this.next = null;
  }
}
