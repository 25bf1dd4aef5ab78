/**
 * The sliding window of received transport counters (whitepaper 5.4.6; the bitmap scheme of
 * RFC 6479): a ring of 64 32-bit words, 2048 bits. The word holding the greatest counter seen
 * is the window's head; counters up to WINDOW_SIZE = 2048 − 32 = 2016 below it are checked
 * against their bit, older ones are refused. Moving the head clears the words it passes over,
 * at most the whole ring, so the cost of an update is bounded whatever the jump.
 *
 *            word (counter / 32) mod 64
 *   ┌────┬────┬────┬─ … ─┬────┬────┐
 *   │ w0 │ w1 │ w2 │     │w62 │w63 │   bit (counter mod 32) of the word: seen
 *   └────┴────┴────┴─ … ─┴────┴────┘
 *
 * `check` only reads (it runs before the AEAD: a forged packet must not move the window);
 * `update` records a counter after its packet authenticated. Counters are plain numbers: at
 * ten million packets a second 2^53 lasts 28 years; readCounter maps larger wire values to
 * Infinity, which is refused like any counter at or beyond REJECT_AFTER_MESSAGES.
 */

const WORDS = 64;
const BITS = WORDS * 32;
export const WINDOW_SIZE = BITS - 32;
/** 2^64 − 2^13 − 1 (whitepaper 6.1); as a double it rounds to 2^64, beyond any counter we read. */
export const REJECT_AFTER_MESSAGES = 2 ** 64 - 2 ** 13 - 1;

export const REPLAY_OK = 0;
export const REPLAY_SEEN = 1;
export const REPLAY_TOO_OLD = 2;

export class ReplayWindow {
  private readonly bits = new Uint32Array(WORDS);
  /** The greatest counter accepted so far; -1 before the first. */
  private greatest = -1;
  private readonly limit: number;

  constructor(limit = REJECT_AFTER_MESSAGES) {
    this.limit = limit;
  }

  /** Whether `counter` may be accepted: REPLAY_OK, REPLAY_SEEN or REPLAY_TOO_OLD. */
  check(counter: number): number {
    if (!(counter < this.limit)) return REPLAY_TOO_OLD;
    if (counter > this.greatest) return REPLAY_OK;
    if (this.greatest - counter >= WINDOW_SIZE) return REPLAY_TOO_OLD;
    const w = Math.floor(counter / 32) % WORDS;
    return (this.bits[w]! >>> (counter % 32)) & 1 ? REPLAY_SEEN : REPLAY_OK;
  }

  /** Records an authenticated counter; returns what `check` would have said before. */
  update(counter: number): number {
    const r = this.check(counter);
    if (r !== REPLAY_OK) return r;
    if (counter > this.greatest) {
      const from = Math.floor(this.greatest / 32);
      const to = Math.floor(counter / 32);
      const n = Math.min(to - from, WORDS);
      for (let i = 1; i <= n; i++) this.bits[(((from + i) % WORDS) + WORDS) % WORDS] = 0;
      this.greatest = counter;
    }
    const w = Math.floor(counter / 32) % WORDS;
    this.bits[w] = this.bits[w]! | (1 << (counter % 32));
    return REPLAY_OK;
  }

  reset(): void {
    this.bits.fill(0);
    this.greatest = -1;
  }
}
