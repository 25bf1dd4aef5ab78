/**
 * What a piece of synchronous code allocates, by function: V8's sampling heap profiler
 * (node:inspector, HeapProfiler.startSampling) with the objects a GC already collected kept in
 * the profile, so short-lived garbage (a heap number returned per call) counts. For the hot-path
 * allocation tests: hot paths allocate nothing, and nothing in the source shows when they do.
 */
import { Session } from 'node:inspector';

interface ProfileNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children?: ProfileNode[];
}

function post<T>(s: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => s.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
}

/**
 * Bytes sampled while `work` ran (synchronously: nothing else runs meanwhile), keyed
 * `function (src/…|test/…|node_modules/…|node:…)`. A sample every 64 bytes on average.
 */
export async function allocations(work: () => void): Promise<Map<string, number>> {
  const s = new Session();
  s.connect();
  try {
    await post(s, 'HeapProfiler.startSampling', {
      samplingInterval: 64,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    work();
    const { profile } = await post<{ profile: { head: ProfileNode } }>(s, 'HeapProfiler.stopSampling');
    const out = new Map<string, number>();
    const walk = (n: ProfileNode): void => {
      if (n.selfSize > 0) {
        const k = `${n.callFrame.functionName || '(anonymous)'} (${n.callFrame.url.replace(/^.*\/(src|test|node_modules)\//, '$1/')})`;
        out.set(k, (out.get(k) ?? 0) + n.selfSize);
      }
      for (const c of n.children ?? []) walk(c);
    };
    walk(profile.head);
    return out;
  } finally {
    s.disconnect();
  }
}

/** The sum of `seen`'s bytes whose key passes `keep` (all by default). */
export function bytesOf(seen: Map<string, number>, keep: (key: string) => boolean = () => true): number {
  let total = 0;
  for (const [k, v] of seen) if (keep(k)) total += v;
  return total;
}
