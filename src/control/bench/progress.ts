/**
 * The progress display of `pinhole bench`: one line per step on stderr, prefixed with the time
 * since the start ("[  83.4s] cross-connect afxdp 64B steady run 2/5: 1.12 Mpps"). Lines, not a
 * redrawn status line, so the output reads the same in a terminal, a pipe and a CI log.
 */
export class Progress {
  private readonly write: (line: string) => void;
  private readonly now: () => number;
  private readonly t0: number;

  constructor(write: (line: string) => void, now: () => number = () => performance.now()) {
    this.write = write;
    this.now = now;
    this.t0 = now();
  }

  /** Seconds since the start. */
  elapsed(): number {
    return (this.now() - this.t0) / 1000;
  }

  step(message: string): void {
    this.write(`[${this.elapsed().toFixed(1).padStart(6)}s] ${message}`);
  }
}
