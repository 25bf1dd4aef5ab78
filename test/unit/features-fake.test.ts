/**
 * Feature probes and the uplink decision against a scripted kernel (FakeSys): "missing" and
 * "not permitted" are told apart, results are memoised, and missing kernel support drives the
 * decision to AF_PACKET with the reason.
 */
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { useSys } from '../../src/sys/index.ts';
import { FakeSys } from '../support/fake-sys.ts';
import { classifyProbeError, probeBpf, probeXdpSockets, resetFeatureProbes, type FeatureSet } from '../../src/kernel/features.ts';
import { decideUplink } from '../../src/uplink/decide.ts';

let restore: (() => void) | undefined;
afterEach(() => {
  restore?.();
  restore = undefined;
  resetFeatureProbes();
});

test('bpf probe: EPERM is not-permitted, ENOSYS is missing, success is ok', async () => {
  const eperm = new FakeSys();
  restore = useSys(
    new FakeSys({
      bpf: () => {
        throw eperm.errno('bpf', 'EPERM');
      },
    }),
  );
  assert.equal((await probeBpf()).status, 'not-permitted');
  restore();
  resetFeatureProbes();
  restore = useSys(
    new FakeSys({
      bpf: () => {
        throw eperm.errno('bpf', 'ENOSYS');
      },
    }),
  );
  assert.equal((await probeBpf()).status, 'missing');
  restore();
  resetFeatureProbes();
  const fake = new FakeSys({ bpf: () => 42, close: () => undefined });
  restore = useSys(fake);
  assert.equal((await probeBpf()).status, 'ok');
  assert.deepEqual(fake.callsOf('close'), [[42]]);
});

test('probes are memoised: the kernel is asked once', async () => {
  const fake = new FakeSys({ bpf: () => 7, close: () => undefined });
  restore = useSys(fake);
  await probeBpf();
  await probeBpf();
  assert.equal(fake.callsOf('bpf').length, 1);
});

test('XDP sockets probe: EAFNOSUPPORT (kernel without AF_XDP) is missing', async () => {
  const fake: FakeSys = new FakeSys({
    socket: () => {
      throw fake.errno('socket', 'EAFNOSUPPORT');
    },
  });
  restore = useSys(fake);
  const r = await probeXdpSockets();
  assert.equal(r.status, 'missing');
  assert.match(r.detail ?? '', /EAFNOSUPPORT/);
  assert.deepEqual(fake.callsOf('socket'), [[44, 3, 0]]);
});

test('missing kernel support found by the probes sends the decision to AF_PACKET', async () => {
  const fake: FakeSys = new FakeSys({
    socket: () => {
      throw fake.errno('socket', 'EAFNOSUPPORT');
    },
    bpf: () => 3,
    close: () => undefined,
  });
  restore = useSys(fake);
  const features: FeatureSet = {
    bpf: await probeBpf(),
    xdpSockets: await probeXdpSockets(),
    bpfLinkXdp: { name: 'bpfLinkXdp', status: 'ok', minKernel: '5.9' },
    bpffs: { name: 'bpffs', status: 'ok', minKernel: '4.4' },
    btf: { name: 'btf', status: 'ok', minKernel: '5.4' },
  };
  const d = decideUplink(features, undefined);
  assert.equal(d.mode, 'afpacket');
  assert.deepEqual(
    d.reasons.map((r) => r.code),
    ['XDP_SOCKETS_UNAVAILABLE'],
  );
});

test('probe error classification', () => {
  const f = new FakeSys();
  assert.equal(classifyProbeError('x', '1', f.errno('bpf', 'EACCES')).status, 'not-permitted');
  assert.equal(classifyProbeError('x', '1', f.errno('bpf', 'EOPNOTSUPP')).status, 'missing');
  assert.equal(classifyProbeError('x', '1', f.errno('bpf', 'EBUSY')).status, 'error');
  assert.equal(classifyProbeError('x', '1', new Error('boom')).status, 'error');
});
