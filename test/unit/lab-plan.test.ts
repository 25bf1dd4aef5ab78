/**
 * The lab's address plan and option checks (planLab, pure: no namespaces are created). The lab
 * tier (test/lab/topology.test.ts) builds these plans in the kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planLab } from '../../src/control/lab/topology.ts';

test('direct lab: defaults and the address plan', () => {
  const p = planLab({ prefix: 'ph-1-1-x' });
  assert.deepEqual([p.underlay, p.uplinkMtu, p.workloadMtu, p.uplinkQueues, p.workloadQueues], [4, 1500, 1430, 2, 1]);
  assert.deepEqual([p.a.role, p.b.role], ['pinhole', 'kernel']);
  assert.deepEqual(p.namespaces, ['ph-1-1-x-a', 'ph-1-1-x-b', 'ph-1-1-x-pA0', 'ph-1-1-x-pB0']);
  assert.deepEqual(
    [p.a.underlay4, p.a.underlay6, p.b.underlay4, p.b.underlay6],
    ['198.18.0.1', '2001:db8::1', '198.18.0.2', '2001:db8::2'],
  );
  assert.equal(p.a.gateway4, undefined);
  assert.equal(p.router, undefined);
  const [wa, wb] = [p.a.workloads[0]!, p.b.workloads[0]!];
  assert.deepEqual([wa.iface, wa.podIface, wa.podAddr4, wa.podAddr6, wa.vni], ['wl0', 'eth0', '198.19.0.1', '2001:db8:100::1', 100]);
  assert.deepEqual([wb.podAddr4, wb.podAddr6, wb.vxlan, wb.bridge], ['198.19.0.2', '2001:db8:100::2', 'vx0', 'br0']);
  assert.equal(wa.vxlan, undefined, 'the pinhole side has no kernel vxlan');
});

test('router lab, IPv6 underlay, several connections', () => {
  const p = planLab({ prefix: 'lab', router: true, underlay: 6, connections: [{ vni: 1 }, { vni: 2 }, { vni: 3 }], uplinkMtu: 9000 });
  assert.equal(p.workloadMtu, 8930);
  assert.deepEqual(
    [p.a.underlay4, p.a.gateway4, p.a.underlay6, p.a.gateway6],
    ['198.18.1.2', '198.18.1.1', '2001:db8:1::2', '2001:db8:1::1'],
  );
  assert.deepEqual(
    [p.b.underlay4, p.b.gateway4, p.b.underlay6, p.b.gateway6],
    ['198.18.2.2', '198.18.2.1', '2001:db8:2::2', '2001:db8:2::1'],
  );
  assert.deepEqual([p.a.tunnelAddr, p.b.tunnelAddr], ['2001:db8:1::2', '2001:db8:2::2']);
  assert.equal(p.router?.ns, 'lab-r');
  assert.deepEqual(
    p.b.workloads.map((w) => [w.iface, w.podNs, w.podAddr4, w.podAddr6, w.podMac]),
    [
      ['wl0', 'lab-pB0', '198.19.0.2', '2001:db8:100::2', '02:00:00:01:00:02'],
      ['wl1', 'lab-pB1', '198.19.1.2', '2001:db8:100:1::2', '02:00:00:01:01:02'],
      ['wl2', 'lab-pB2', '198.19.2.2', '2001:db8:100:2::2', '02:00:00:01:02:02'],
    ],
  );
});

test('bad options are refused before anything is created', () => {
  for (const o of [
    { prefix: '' },
    { prefix: '-x' },
    { prefix: 'a/b' },
    { prefix: 'x', underlay: 5 as 4 },
    { prefix: 'x', connections: [] },
    { prefix: 'x', connections: [{ vni: 1 }, { vni: 1 }] },
    { prefix: 'x', connections: [{ vni: 1 << 24 }] },
    { prefix: 'x', uplinkQueues: 0 },
    { prefix: 'x', uplinkMtu: 1349 }, // workload MTU would be 1279 < 1280
    { prefix: 'x', sides: { a: 'kernel' as const, b: 'vpp' as 'kernel' } },
  ]) {
    assert.throws(() => planLab(o), { code: 'ERR_LAB_OPTIONS' }, JSON.stringify(o));
  }
});
