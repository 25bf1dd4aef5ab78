/**
 * Worker supervision on the main thread: starts one dataplane worker per plan, waits until every
 * worker has opened its ports (or fails as a whole, stopping those that started), reads their
 * counters by name, forwards their requests (next-hop misses), reports a worker that dies after
 * it was ready, and stops them. Host setup (programs, attachments, guards) is not done here: the
 * caller does it before and undoes it after (uplink/host.ts, daemon/forwarder.ts).
 */
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { PinholeError } from '../sys/errors.ts';
import { startWorker } from '../worker/spawn.ts';
import { addCounters, readCounters, type CounterLayout, type CounterValues } from './counters.ts';
import {
  CTRL_RECONF,
  CTRL_SLOTS,
  CTRL_STOP,
  planCounters,
  type ConfigureMessage,
  type PortDriver,
  type WorkerMessage,
  type WorkerPlan,
} from './plan.ts';
import type { WorkerInit } from './worker.ts';

const WORKER_URL = new URL('./worker.ts', import.meta.url);

export interface WorkerHandle {
  plan: WorkerPlan;
  readonly worker: Worker;
  layout: CounterLayout;
  counters: Float64Array;
  /** Where ConfigureMessages go. */
  readonly inbox: MessagePort;
  readonly control: Int32Array;
  ports: { name: string; driver: PortDriver; detail: string }[];
  /** Set when we asked it to stop: an exit after that is not a death. */
  stopping: boolean;
  readonly stopped: Promise<void>;
}

export interface SuperviseOptions {
  neighbours?: SharedArrayBuffer;
  nexthops?: SharedArrayBuffer;
  readyTimeoutMs?: number;
  onMiss?: (worker: number, connection: number) => void;
  /** A WireGuard peer's endpoint changed (roamed or learned). */
  onEndpoint?: (worker: number, connection: number, endpoint: string) => void;
  /** A worker died after it was ready (its queue is no longer served). */
  onDeath?: (worker: number, why: string) => void;
}

export class Supervisor {
  private stopping: Promise<void> | undefined;
  private seq = 0;
  private readonly waiting = new Map<string, (m: WorkerMessage) => void>();
  /** The next-hop table the workers' current plans index (for a rollback). */
  private nexthops: SharedArrayBuffer | undefined;
  private constructor(readonly workers: WorkerHandle[]) {}

  /** @internal a worker answered a ConfigureMessage. */
  settle(m: WorkerMessage): void {
    if (m.type !== 'configured' && m.type !== 'configure-failed') return;
    const k = `${m.worker}/${m.seq}`;
    this.waiting.get(k)?.(m);
    this.waiting.delete(k);
  }

  /**
   * Gives every worker a new plan (same workers, one plan each, in worker order). Each worker
   * opens what the plan adds before it changes anything; if any worker fails, the workers that
   * succeeded are given their previous plan back, and the error is thrown: the running state is
   * what it was. Counters of untouched owners carry over.
   */
  async reconfigure(plans: readonly WorkerPlan[], extra: { nexthops?: SharedArrayBuffer } = {}, timeoutMs = 15_000): Promise<void> {
    if (plans.length !== this.workers.length) throw new PinholeError('ERR_DATAPLANE_CONFIGURE', 'a new plan per worker is needed');
    const previous = this.workers.map((w) => w.plan);
    const previousNexthops = this.nexthops;
    const send = (w: WorkerHandle, plan: WorkerPlan, nexthops: SharedArrayBuffer | undefined): Promise<WorkerMessage> => {
      const seq = ++this.seq;
      const layout = planCounters(plan);
      const counters = new SharedArrayBuffer(Math.max(1, layout.size) * 8);
      const m: ConfigureMessage = { type: 'configure', seq, plan, counters, ...(nexthops ? { nexthops } : {}) };
      return new Promise<WorkerMessage>((resolve) => {
        const timer = setTimeout(() => {
          this.waiting.delete(`${plan.worker}/${seq}`);
          // A worker that does not answer may still apply the plan later, behind our back: it
          // cannot be trusted any more. Stop it; its death restarts the dataplane (daemon.ts).
          void w.worker.terminate();
          resolve({
            type: 'configure-failed',
            worker: plan.worker,
            seq,
            code: 'ERR_DATAPLANE_TIMEOUT',
            message: `no answer within ${timeoutMs} ms (worker stopped)`,
          });
        }, timeoutMs);
        timer.unref();
        this.waiting.set(`${plan.worker}/${seq}`, (r) => {
          clearTimeout(timer);
          if (r.type === 'configured') {
            w.plan = plan;
            w.layout = layout;
            w.counters = new Float64Array(counters);
            w.ports = r.ports;
          }
          resolve(r);
        });
        w.inbox.postMessage(m);
        Atomics.store(w.control, CTRL_RECONF, 1);
      });
    };
    const results = await Promise.all(this.workers.map((w, i) => send(w, plans[i]!, extra.nexthops)));
    const failed = results.find((r) => r.type === 'configure-failed');
    if (!failed || failed.type !== 'configure-failed') {
      if (extra.nexthops) this.nexthops = extra.nexthops;
      return;
    }
    // Roll the others back to what they ran, with the next-hop table their plan indexes.
    await Promise.all(
      this.workers.map((w, i) =>
        results[i]!.type === 'configured' ? send(w, previous[i]!, previousNexthops) : Promise.resolve(results[i]!),
      ),
    );
    throw new PinholeError(failed.code, `worker ${failed.worker}: ${failed.message}`, { details: { port: failed.port } });
  }

  static async start(plans: readonly WorkerPlan[], opts: SuperviseOptions = {}): Promise<Supervisor> {
    const workers: WorkerHandle[] = [];
    const ready: Promise<void>[] = [];
    let sup: Supervisor | undefined;
    const timeoutMs = opts.readyTimeoutMs ?? 15_000;
    for (const plan of plans) {
      const layout = planCounters(plan);
      const counters = new SharedArrayBuffer(Math.max(1, layout.size) * 8);
      const control = new SharedArrayBuffer(CTRL_SLOTS * 4);
      const channel = new MessageChannel();
      const init: WorkerInit = {
        plan,
        counters,
        control,
        inbox: channel.port2,
        ...(opts.neighbours ? { neighbours: opts.neighbours } : {}),
        ...(opts.nexthops ? { nexthops: opts.nexthops } : {}),
      };
      const worker = startWorker(WORKER_URL, init as unknown as Record<string, unknown>, [channel.port2]);
      let onStopped!: () => void;
      const stopped = new Promise<void>((r) => (onStopped = r));
      let isReady = false;
      const h: WorkerHandle = {
        plan,
        worker,
        layout,
        counters: new Float64Array(counters),
        control: new Int32Array(control),
        inbox: channel.port1,
        ports: [],
        stopping: false,
        stopped,
      };
      const died = (why: string): void => {
        if (isReady && !h.stopping) opts.onDeath?.(plan.worker, why);
      };
      worker.on('error', (e) => died(`worker error: ${e.message}`));
      worker.on('exit', (code) => {
        onStopped();
        died(`worker exited (code ${code})`);
      });
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'configured' || m.type === 'configure-failed') sup?.settle(m);
        if (m.type === 'miss') opts.onMiss?.(m.worker, m.connection);
        else if (m.type === 'endpoint') opts.onEndpoint?.(m.worker, m.connection, m.endpoint);
        else if (m.type === 'error') died(`${m.code}: ${m.message}`);
        else if (m.type === 'stopped') onStopped();
      });
      ready.push(
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new PinholeError('ERR_DATAPLANE_TIMEOUT', `worker ${plan.worker}: not ready within ${timeoutMs} ms`)),
            timeoutMs,
          );
          worker.on('message', (m: WorkerMessage) => {
            if (m.type === 'ready') {
              clearTimeout(timer);
              isReady = true;
              h.ports = m.ports;
              resolve();
            } else if (m.type === 'error' && !isReady) {
              clearTimeout(timer);
              reject(new PinholeError(m.code, `worker ${plan.worker}: ${m.message}`, { details: { port: m.port } }));
            }
          });
          worker.once('error', (e) => {
            clearTimeout(timer);
            reject(new PinholeError('ERR_DATAPLANE_WORKER', `worker ${plan.worker} failed: ${e.message}`, { cause: e }));
          });
          worker.once('exit', () => {
            clearTimeout(timer);
            reject(new PinholeError('ERR_DATAPLANE_WORKER', `worker ${plan.worker} exited before it was ready`));
          });
        }),
      );
      workers.push(h);
    }
    sup = new Supervisor(workers);
    sup.nexthops = opts.nexthops;
    try {
      await Promise.all(ready);
    } catch (err) {
      await sup.stop();
      throw err;
    }
    return sup;
  }

  /** Every worker's counters by name. */
  perWorker(): CounterValues[] {
    return this.workers.map((w) => readCounters(w.layout, w.counters));
  }

  /** Counters added up over the workers. */
  totals(): CounterValues {
    const t: CounterValues = {};
    for (const v of this.perWorker()) addCounters(t, v);
    return t;
  }

  /** Stops every worker (drain, close ports) and waits for them. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const w of this.workers) {
        w.stopping = true;
        Atomics.store(w.control, CTRL_STOP, 1);
      }
      await Promise.all(this.workers.map((w) => Promise.race([w.stopped, new Promise<void>((r) => setTimeout(r, 5000).unref())])));
      await Promise.all(this.workers.map((w) => w.worker.terminate()));
    })();
    return this.stopping;
  }
}
