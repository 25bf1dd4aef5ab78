/**
 * Generic bpf object operations: pin/open in bpffs, info by fd, fd by id.
 */
import { alloc, getSys, PinholeError, type StructLayout, type FieldValue } from '../sys/index.ts';
import { BPF_OBJ_GET, BPF_OBJ_GET_INFO_BY_FD, BPF_OBJ_PIN, GetIdAttr, InfoAttr, ObjAttr } from './bpf-attr.ts';

function cString(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  const out = alloc(b.length + 1);
  out.set(b);
  return out;
}

export function pinObject(fd: number, path: string, what: string): void {
  const sys = getSys();
  const p = cString(path);
  try {
    sys.bpf(BPF_OBJ_PIN, ObjAttr.encode({ pathname: sys.addressOf(p), bpf_fd: fd }), [p]);
  } catch (err) {
    throw new PinholeError('ERR_BPF_PIN', `pin ${what} at ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function openPinned(path: string, what: string): number {
  const sys = getSys();
  const p = cString(path);
  try {
    return sys.bpf(BPF_OBJ_GET, ObjAttr.encode({ pathname: sys.addressOf(p) }), [p]);
  } catch (err) {
    throw new PinholeError('ERR_BPF_PIN', `open pinned ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

export function objectInfo(fd: number, layout: StructLayout): Record<string, FieldValue> {
  const sys = getSys();
  const info = alloc(layout.size);
  sys.bpf(BPF_OBJ_GET_INFO_BY_FD, InfoAttr.encode({ bpf_fd: fd, info_len: layout.size, info: sys.addressOf(info) }), [info]);
  return layout.decode(info);
}

/** An fd for the object with `id` (BPF_PROG_GET_FD_BY_ID and friends). */
export function fdById(cmd: number, id: number): number {
  return getSys().bpf(cmd, GetIdAttr.encode({ start_id: id }));
}

export function decodeName(bytes: Uint8Array): string {
  const z = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.subarray(0, z < 0 ? bytes.length : z));
}
