// buildGraph applies port.pendingChecksums only once the whole graph is built: a failed reconfiguration
// leaves the running graph's ports as they were (a port feeding WireGuard must keep sending complete checksums).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGraph } from '../../src/dataplane/graph.ts';
import { PacketMemory } from '../../src/dataplane/memory.ts';
import { planCounters, type WorkerPlan, type PortPlan } from '../../src/dataplane/plan.ts';
import { counterBase } from '../../src/dataplane/counters.ts';
import { MemoryPort } from '../support/memory-port.ts';
import { NextHopTable, nextHopTableBytes } from '../../src/dataplane/nexthop-table.ts';
import { NeighbourTableWriter } from '../../src/netlink/neigh-table.ts';

const port = (name: string, role: PortPlan['role'], connection?: number): PortPlan =>
  ({
    name,
    role,
    ifname: `mem-${name}`,
    queue: 0,
    driver: 'afpacket',
    rx: true,
    ...(connection !== undefined ? { connection } : {}),
  }) as PortPlan;

test('a failed buildGraph changes no port (pendingChecksums of a kept port stays as the running graph left it)', () => {
  const plan = {
    worker: 0,
    graph: 'vxlan',
    ports: [port('uplink', 'uplink'), port('wl:c0', 'workload', 0)],
    connections: [
      {
        index: 0,
        name: 'c0',
        vni: 100,
        family: 4,
        local: '198.18.0.1',
        remote: '198.18.0.2',
        port: 4789,
        ttl: 64,
        srcMac: '02:00:00:00:00:01',
        maxInnerFrame: 1464,
        workloadPort: 'wl:c0',
      },
    ],
    wireguard: [{ index: 1, name: 'w', workloadPort: 'wl:gone', uplinkMtu: 1500 }],
    batchSize: 64,
    waitQueue: { frames: 8, timeoutMs: 1000 },
  } as unknown as WorkerPlan;
  const layout = planCounters({ ...plan, wireguard: [] } as WorkerPlan);
  const c = new Float64Array(layout.size + 4096);
  const memory = new PacketMemory();
  const ports = new Map<string, MemoryPort>();
  for (const p of plan.ports)
    ports.set(p.name, new MemoryPort({ name: p.name, memory, counters: c, base: counterBase(layout, `port:${p.name}`), slots: 64 }));
  const wl = ports.get('wl:c0')! as unknown as { pendingChecksums?: boolean };
  wl.pendingChecksums = false; // as the running WireGuard graph left it
  assert.throws(() =>
    buildGraph(plan, layout, c, memory, ports, {
      nexthops: new NextHopTable(new SharedArrayBuffer(nextHopTableBytes(2))).buffer,
      neighbours: new NeighbourTableWriter(16).buffer,
    }),
  );
  assert.equal(wl.pendingChecksums, false, 'a failed build must change nothing');
  // The same plan without the broken WireGuard part builds, and then the VXLAN port leaves checksums pending.
  buildGraph({ ...plan, wireguard: [] } as WorkerPlan, layout, c, memory, ports, {
    nexthops: new NextHopTable(new SharedArrayBuffer(nextHopTableBytes(2))).buffer,
    neighbours: new NeighbourTableWriter(16).buffer,
  });
  assert.equal(wl.pendingChecksums, true, 'a built VXLAN graph sets it');
});
