/**
 * Starting worker threads that run TypeScript sources: every worker starts in bootstrap.mjs,
 * which registers tsx's loader in its own thread and then imports the real entry.
 */
import { Worker, type Transferable } from 'node:worker_threads';

const bootstrap = new URL('./bootstrap.mjs', import.meta.url);

/** Starts `url` (a .ts module) in a worker thread; `workerData` must be an object. */
export function startWorker(url: URL, workerData: Record<string, unknown>, transferList: Transferable[] = []): Worker {
  return new Worker(bootstrap, { workerData: { ...workerData, __entry: url.href }, transferList });
}

/** Runs a worker that posts exactly one message (its result) and exits. */
export function runWorkerOnce<T>(url: URL, workerData: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const w = startWorker(url, workerData);
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      void w.terminate();
      reject(new Error(`worker ${url.pathname} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    w.once('message', (m: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(m);
    });
    w.once('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    });
    w.once('exit', (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`worker ${url.pathname} exited with code ${code} before answering`));
    });
  });
}
