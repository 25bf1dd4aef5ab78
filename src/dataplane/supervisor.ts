/**
 * Worker supervision on the main thread: starts one dataplane worker per plan, waits until every
 * worker has opened its ports (or fails as a whole, stopping those that started), reads their
 * counters by name, forwards their requests (next-hop misses), reports a worker that dies after
 * it was ready, and stops them. Host setup (programs, attachments, guards) is not done here: the
 * caller does it before and undoes it after (uplink/host.ts, daemon/forwarder.ts).
 */
import type { Worker } from 'node:worker_threads';
import { PinholeError } from '../sys/errors.ts';
import { startWorker } from '../worker/spawn.ts';
import { addCounters, readCounters, type CounterLayout, type CounterValues } from './counters.ts';
import { CTRL_SLOTS, CTRL_STOP, planCounters, type PortDriver, type WorkerMessage, type WorkerPlan } from './plan.ts';
import type { WorkerInit } from './worker.ts';

const WORKER_URL = new URL('./worker.ts', import.meta.url);

export interface WorkerHandle {
  readonly plan: WorkerPlan;
  readonly worker: Worker;
  readonly layout: CounterLayout;
  readonly counters: Float64Array;
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
  /** A worker died after it was ready (its queue is no longer served). */
  onDeath?: (worker: number, why: string) => void;
}

export class Supervisor {
  private stopping: Promise<void> | undefined;
  private constructor(readonly workers: WorkerHandle[]) {}

  static async start(plans: readonly WorkerPlan[], opts: SuperviseOptions = {}): Promise<Supervisor> {
    const workers: WorkerHandle[] = [];
    const ready: Promise<void>[] = [];
    const timeoutMs = opts.readyTimeoutMs ?? 15_000;
    for (const plan of plans) {
      const layout = planCounters(plan);
      const counters = new SharedArrayBuffer(Math.max(1, layout.size) * 8);
      const control = new SharedArrayBuffer(CTRL_SLOTS * 4);
      const init: WorkerInit = {
        plan,
        counters,
        control,
        ...(opts.neighbours ? { neighbours: opts.neighbours } : {}),
        ...(opts.nexthops ? { nexthops: opts.nexthops } : {}),
      };
      const worker = startWorker(WORKER_URL, init as unknown as Record<string, unknown>);
      let onStopped!: () => void;
      const stopped = new Promise<void>((r) => (onStopped = r));
      let isReady = false;
      const h: WorkerHandle = {
        plan,
        worker,
        layout,
        counters: new Float64Array(counters),
        control: new Int32Array(control),
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
        if (m.type === 'miss') opts.onMiss?.(m.worker, m.connection);
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
    const sup = new Supervisor(workers);
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
