/**
 * `copyWithin` of a Uint8Array, called through the function itself: `copyWithin.call(u8, to,
 * from, end)` instead of `u8.copyWithin(to, from, end)`.
 *
 * Why: in a dataplane worker TurboFan compiled `u8.copyWithin(...)` as a generic property load
 * (a `LoadIC` call per copy, to find the method on the array's prototype) even with monomorphic
 * feedback, then the C++ builtin; one call per forwarded frame in copy-mode AF_XDP, per GSO
 * segment on the TCP path. Called through the module constant the target is known at compile
 * time: the optimised code enters the builtin directly (checked with `--print-opt-code`; the
 * cross-connect profile's `LoadIC` share fell from 0.9% to 0.2% of the forwarder's CPU).
 */
export const copyWithin: (this: Uint8Array, target: number, start: number, end?: number) => Uint8Array = Uint8Array.prototype.copyWithin;
