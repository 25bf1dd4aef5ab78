/**
 * Counters that grow without bound (frames, bytes) in plain object fields. V8 keeps a small
 * integer (a Smi: 32 bits signed on this build) in a field as it is; the first value past 2^31
 * changes the field's representation to a boxed double. That change retires the object's hidden
 * class, and every optimised function that touched such an object is thrown away and compiled
 * again — on a dataplane worker, the compiler's threads take its CPU and every frame waits
 * (measured: a link's byte count passing 2 GiB a few seconds into a TCP test cost ~120 ms of
 * compiling and ping spikes of 4–15 ms). Starting such fields as doubles makes that change at
 * construction, before anything is optimised; their values are the same numbers.
 */
export function doubleFields<T extends object>(o: T, ...keys: (keyof T & string)[]): T {
  const r = o as Record<string, number>;
  for (const k of keys) {
    const v = r[k]!;
    r[k] = 0.5; // not a Smi: the field becomes a double field, and stays one
    r[k] = v;
  }
  return o;
}
