/**
 * The engine of one worker: ports and stages joined by links, run in breaths (Snabb's
 * core/app.lua breathe loop, reduced to what one worker thread needs):
 *
 *   breathe():  1. every receiving port pulls one batch into its output link
 *               2. every stage, in graph order, drains its input link(s) into its outputs
 *               3. every transmitting port copies its input link into its TX buffers, flushes
 *               4. every receiving port releases its batch (frames were only borrowed)
 *
 * Links never carry frames from one breathe to the next, so a received frame is referenced only
 * within the breathe that received it; a stage that must hold frames longer (the next-hop wait
 * queue) copies them. Work per breathe is bounded by the link capacities.
 *
 * run(): breathe until the stop flag is raised; when a breathe moved nothing, sleep in one
 * poll(2) over every receiving port's fd (≤ 50 ms, ≤ 5 ms while frames wait for a next hop).
 * With `spinUs` (config uplink.spinUs) the worker first keeps polling its receive rings that
 * long after the last breath that moved frames, and sleeps only then: a frame that arrives
 * meanwhile is taken without a wake-up. Waking a sleeping thread from another CPU costs the
 * development VM 60-120 µs (an idle ping's round trip through pinhole meets two), so polling
 * trades CPU for latency; only traffic starts it (a poll that timed out does not).
 * Kernel statistics that need a syscall are refreshed about once a second.
 */
import { getSys, alloc, POLLERR, POLLHUP, POLLIN, POLLNVAL } from '../sys/index.ts';
import type { Link } from './link.ts';
import type { Port } from './port.ts';
import { CTRL_RECONF, CTRL_STOP } from './plan.ts';

export interface RxRoute {
  port: Port;
  out: Link;
  /** The aux tag given to every frame (a connection index, or -1). */
  tag: number;
}

export interface TxRoute {
  input: Link;
  port: Port;
}

export interface Step {
  /** Drains the step's input link(s). `now` (ms, performance.now()'s timeline) is the breathe's start. */
  run(now: number): void;
  /** Frames held across breaths (the engine wakes more often while any are). */
  readonly held?: number;
  /**
   * The graph is replaced (`reconfigured`) or the worker stops (`stopped`): give back what the
   * step registered (packet memory), count what it held as dropped for that reason.
   */
  dispose?(why: DisposeReason): void;
}

export type DisposeReason = 'reconfigured' | 'stopped';

export const ENGINE_SLOT = { breaths: 0, idleWaits: 1, frames: 2, spinMs: 3 } as const;

export class Engine {
  private readonly pollfds: Uint8Array;
  private readonly pollPorts: Port[];
  private readonly pollView: DataView;
  private lastStats = 0;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  /** The clock (Sys.nowMs: performance.now() allocates, once per breath and per look while polling). */
  private readonly sys = getSys();
  /** How long to keep polling after the last breath that moved frames (ms). */
  private readonly spinMs: number;
  /** Start (nowMs) of the last breath that moved frames. */
  private lastBusy = -Infinity;

  constructor(
    private readonly rx: readonly RxRoute[],
    private readonly steps: readonly Step[],
    private readonly tx: readonly TxRoute[],
    private readonly c: Float64Array,
    private readonly base: number,
    spinUs = 0,
  ) {
    this.spinMs = spinUs / 1000;
    this.pollPorts = rx.map((r) => r.port).filter((p) => p.fd >= 0);
    this.pollfds = alloc(8 * Math.max(1, this.pollPorts.length));
    this.pollView = new DataView(this.pollfds.buffer, this.pollfds.byteOffset, this.pollfds.byteLength);
    this.pollPorts.forEach((p, i) => {
      this.pollView.setInt32(8 * i, p.fd, true);
      this.pollView.setInt16(8 * i + 4, POLLIN, true);
    });
  }

  /** One turn of the graph; returns the frames received. */
  breathe(now: number): number {
    const rx = this.rx;
    let frames = 0;
    for (let i = 0; i < rx.length; i++) {
      const r = rx[i]!;
      frames += r.port.rx(r.out, r.tag);
    }
    const steps = this.steps;
    for (let i = 0; i < steps.length; i++) steps[i]!.run(now);
    const tx = this.tx;
    for (let i = 0; i < tx.length; i++) {
      const t = tx[i]!;
      if (t.input.n > 0) t.port.tx(t.input);
      t.input.clear();
      t.port.flush();
    }
    for (let i = 0; i < rx.length; i++) rx[i]!.port.release();
    const c = this.c;
    c[this.base + ENGINE_SLOT.breaths]++;
    c[this.base + ENGINE_SLOT.frames] += frames;
    return frames;
  }

  private held(): number {
    let h = 0;
    for (let i = 0; i < this.steps.length; i++) h += this.steps[i]!.held ?? 0;
    return h;
  }

  /** Blocks until a receiving port has frames or `timeoutMs` passes. */
  wait(timeoutMs: number): void {
    const rx = this.rx;
    for (let i = 0; i < rx.length; i++) if (rx[i]!.port.readable()) return;
    const n = this.pollPorts.length;
    if (n === 0) {
      // Nothing to poll (in-memory ports): sleep without a syscall of our own.
      Atomics.wait(this.sleeper, 0, 0, timeoutMs);
      return;
    }
    const v = this.pollView;
    for (let i = 0; i < n; i++) v.setInt16(8 * i + 6, 0, true);
    // A signal (EINTR) only ends the wait early; any other poll error is counted per port below
    // through revents, never thrown out of the worker's loop.
    const ready = getSys().tryPoll(this.pollfds, n, timeoutMs);
    if (ready <= 0) return;
    for (let i = 0; i < n; i++) {
      const re = v.getInt16(8 * i + 6, true);
      if ((re & (POLLERR | POLLHUP | POLLNVAL)) !== 0) {
        this.pollPorts[i]!.pollError();
      }
    }
  }

  refreshStats(): void {
    const seen = new Set<Port>();
    for (const r of this.rx) seen.add(r.port);
    for (const t of this.tx) seen.add(t.port);
    // Once a second, off the hot path: a port whose device vanished must not take the worker
    // down with a failed statistics call; it is counted and the main thread sees the link go.
    for (const p of seen) {
      try {
        p.refreshStats();
      } catch {
        p.pollError();
      }
    }
  }

  /** The graph is being replaced, or the worker stops: every step gives back what it holds. */
  dispose(why: DisposeReason): void {
    for (const s of this.steps) s.dispose?.(why);
  }

  /** Breathes until ctrl[CTRL_STOP] or ctrl[CTRL_RECONF] is raised. */
  run(ctrl: Int32Array): void {
    while (Atomics.load(ctrl, CTRL_STOP) === 0 && Atomics.load(ctrl, CTRL_RECONF) === 0) {
      const now = this.sys.nowMs();
      if (now - this.lastStats >= 1000) {
        this.lastStats = now;
        this.refreshStats();
      }
      if (this.breathe(now) > 0) {
        this.lastBusy = now;
        continue;
      }
      const idle = now - this.lastBusy;
      if (idle >= this.spinMs) {
        this.c[this.base + ENGINE_SLOT.idleWaits]++;
        // A port in an error state (link down) would make poll return at once: the ports clear
        // the error in pollError() and AF_PACKET waits out the timeout while its link is down.
        this.wait(this.held() > 0 ? 5 : 50);
        continue;
      }
      // Polling (uplink.spinUs): watch the receive rings, not whole breaths — an empty breath
      // would pass the clock to every stage, a heap number each time — for at most a millisecond
      // (the stages' timers get their breath) and not past the end of the spin. Counted from this
      // breath's start: the CPU polling costs, for operators and the bench's CPU per packet.
      this.watchRings(idle + 1 < this.spinMs ? 1 : this.spinMs - idle);
      this.c[this.base + ENGINE_SLOT.spinMs] += this.sys.nowMs() - now;
    }
  }

  /** Returns as soon as a receiving port has frames, or after `ms`. */
  private watchRings(ms: number): void {
    const rx = this.rx;
    const end = this.sys.nowMs() + ms;
    do {
      // The clock costs ~80 ns, a look at a ring a few: read it every 16 rounds.
      for (let k = 0; k < 16; k++) for (let i = 0; i < rx.length; i++) if (rx[i]!.port.readable()) return;
    } while (this.sys.nowMs() < end);
  }
}
