/**
 * The locked-memory budget of AF_XDP UMEMs (src/kernel/features.ts), pure: the probe registers
 * a UMEM of the uplink's real size exactly when the kernel will charge it to RLIMIT_MEMLOCK, and
 * a refused registration names the capability and the limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { umemFailureMessage, umemProbeBytes, XSK_UMEM_BYTES } from '../../src/kernel/features.ts';

test('probe size: one page unless the UMEM is charged to a finite RLIMIT_MEMLOCK', () => {
  assert.equal(umemProbeBytes({ capIpcLock: true, limit: 65536 }), 4096);
  assert.equal(umemProbeBytes({ capIpcLock: false, limit: Number.POSITIVE_INFINITY }), 4096);
  assert.equal(umemProbeBytes({ capIpcLock: false, limit: 8 << 20 }), XSK_UMEM_BYTES);
  assert.equal(XSK_UMEM_BYTES, 64 << 20); // 8192-entry fill ring + 2048-entry TX ring, 4 KiB frames
});

test('a refused UMEM names the errno, CAP_IPC_LOCK and RLIMIT_MEMLOCK with its value', () => {
  const m = umemFailureMessage('ENOBUFS', XSK_UMEM_BYTES, { capIpcLock: false, limit: 8 << 20 });
  assert.match(m, /^registering a 64 MiB UMEM failed \(ENOBUFS\): the locked-memory limit: no CAP_IPC_LOCK and RLIMIT_MEMLOCK is 8 MiB/);
  assert.match(m, /grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK/);
  assert.match(umemFailureMessage('ENOMEM', 4096, { capIpcLock: true, limit: 0 }), /4096 bytes UMEM failed \(ENOMEM\): .*pin/);
  assert.equal(umemFailureMessage('EINVAL', 4096, { capIpcLock: true, limit: 0 }), 'registering a 4096 bytes UMEM failed (EINVAL)');
});
