/**
 * Jumbo MTUs end to end (lab tier): an uplink MTU of 9000 (pods 8930, the IPv6 VXLAN overhead
 * below it), as clouds run them (AWS 9001, GCP 8896). `auto` must choose AF_PACKET (a 9 KB frame
 * does not fit a 4 KiB UMEM frame: MTU_TOO_LARGE_FOR_AF_XDP) and then carry everything a pod
 * sends: pings of the whole MTU with DF set, and TCP both ways, the pods keeping TSO (their
 * super-frames are split into 9 KB segments, and between two pinholes sent as GSO trains of 9 KB
 * packets). Before the TX slots and the segment memory were sized from the MTU, no TCP passed at
 * all (2 KiB slots: every full-sized frame a `too-big` drop). And an uplink whose MTU is raised to
 * 9000 while pinhole runs on AF_XDP: the daemon starts again on AF_PACKET (ERR_UPLINK_MTU_CHANGED).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { followLog } from '../helpers/output.ts';
import { configFor, iperf, noXdp, ping, startRun, withLab, type RunLine, type RunProc } from '../helpers/vxlan-lab.ts';
import type { Lab } from '../../src/control/lab/topology.ts';

requireRoot();

const MTU = 9000;
/** Pods' MTU: the uplink's less the IPv6 VXLAN overhead (70), the lab's default. */
const POD_MTU = MTU - 70;

/** Every drop counter of a `stats`/`stopped` line that says a frame was too large somewhere. */
function sizeDrops(line: RunLine): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [port, c] of Object.entries(line.ports)) {
    for (const k of ['tx_too_big', 'rx_offload_drops']) if ((c[k] ?? 0) > 0) out[`${port}.${k}`] = c[k]!;
  }
  for (const [k, v] of Object.entries(line.drops)) if (/too-big|no-headroom/.test(k) && v > 0) out[k] = v;
  return out;
}

function assertJumboRun(ready: RunLine): void {
  assert.equal(ready.mode, 'afpacket', JSON.stringify(ready));
  const codes = (ready as unknown as { reasons: { code: string }[] }).reasons.map((r) => r.code);
  assert.ok(codes.includes('MTU_TOO_LARGE_FOR_AF_XDP'), codes.join(','));
}

async function jumboTraffic(lab: Lab, procs: RunProc[], family: 4 | 6): Promise<void> {
  const wa = lab.a.workloads[0]!;
  const wb = lab.b.workloads[0]!;
  const dst = family === 4 ? wb.podAddr4 : wb.podAddr6;
  const back = family === 4 ? wa.podAddr4 : wa.podAddr6;
  // The largest ICMP payload a pod MTU holds, DF set: one full-sized frame each way per ping.
  const size = POD_MTU - (family === 4 ? 28 : 48);
  assert.equal(ping(lab, wa.podNs, dst, 3, 0.2, size).received, 3, `ping -s ${size} A → B`);
  assert.equal(ping(lab, wb.podNs, back, 3, 0.2, size).received, 3, `ping -s ${size} B → A`);
  // One byte more does not fit the pods' MTU: the sender's own kernel refuses it (no fragments).
  assert.equal(ping(lab, wa.podNs, dst, 1, 0.2, size + 1, 2).received, 0);
  const up = await iperf(wa.podNs, wb.podNs, dst);
  const down = await iperf(wa.podNs, wb.podNs, dst, { reverse: true });
  // Measured here 3.9–7 Gbit/s; before the fix 0. A floor far below both: it tests that TCP
  // flows at jumbo sizes, not how fast.
  assert.ok(up.bps > 2e8, `TCP upload at MTU ${MTU}: ${(up.bps / 1e9).toFixed(2)} Gbit/s`);
  assert.ok(down.bps > 2e8, `TCP download at MTU ${MTU}: ${(down.bps / 1e9).toFixed(2)} Gbit/s`);
  for (const p of procs) assert.deepEqual(sizeDrops(await p.nextStats()), {}, 'no frame dropped for its size');
}

test(`pinhole ↔ the kernel's vxlan at uplink MTU ${MTU} (auto → AF_PACKET): full-MTU pings both ways, TCP both ways, no size drops`, async () => {
  await withLab('jk', { sides: { a: 'pinhole', b: 'kernel' }, uplinkMtu: MTU, podChecksumOffload: true }, async (lab) => {
    const p = startRun(lab.a, configFor(lab.a, lab.b, 'auto', [4]));
    assertJumboRun((await p.ready) as unknown as RunLine);
    await jumboTraffic(lab, [p], 4);
    const fin = (await p.stop()) as unknown as RunLine;
    assert.deepEqual(sizeDrops(fin), {});
    noXdp(lab, lab.a.ns, lab.a.uplink);
  });
});

test(`pinhole ↔ pinhole at uplink MTU ${MTU}, IPv6 underlay: 9 KB segments as GSO trains, split again on the far side; TCP both ways`, async () => {
  await withLab('jp', { sides: { a: 'pinhole', b: 'pinhole' }, uplinkMtu: MTU, podChecksumOffload: true }, async (lab) => {
    const pa = startRun(lab.a, configFor(lab.a, lab.b, 'auto', [6]));
    const pb = startRun(lab.b, configFor(lab.b, lab.a, 'auto', [6]));
    for (const r of (await Promise.all([pa.ready, pb.ready])) as unknown as RunLine[]) assertJumboRun(r);
    await jumboTraffic(lab, [pa, pb], 6);
    const [fa, fb] = (await Promise.all([pa.stop(), pb.stop()])) as unknown as RunLine[];
    // The pods' TCP left as trains of jumbo packets and came in whole on the other side.
    for (const [name, f] of [
      ['A', fa!],
      ['B', fb!],
    ] as const) {
      assert.ok((f.ports.uplink?.tx_gso_trains ?? 0) > 0, `node ${name} sent GSO trains: ${JSON.stringify(f.ports.uplink)}`);
      assert.ok((f.ports['wl:c0']?.rx_gso_frames ?? 0) > 0, `node ${name} split its pod's super-frames: ${JSON.stringify(f.ports)}`);
      assert.deepEqual(sizeDrops(f), {}, `node ${name}`);
    }
  });
});

test(`the uplink MTU raised from 1500 to ${MTU} under a running AF_XDP pinhole: recovering (ERR_UPLINK_MTU_CHANGED), back on AF_PACKET, jumbo traffic passes`, async () => {
  await withLab('jm', { sides: { a: 'pinhole', b: 'kernel' }, uplinkMtu: MTU, podChecksumOffload: true }, async (lab) => {
    const wa = lab.a.workloads[0]!;
    const wb = lab.b.workloads[0]!;
    lab.exec(lab.a.ns, 'ip', ['link', 'set', 'dev', lab.a.uplink, 'mtu', '1500']);
    const p = startRun(lab.a, configFor(lab.a, lab.b, 'auto', [4]));
    const log = followLog(p.child);
    assert.equal(((await p.ready) as unknown as RunLine).mode, 'afxdp');
    assert.equal(ping(lab, wa.podNs, wb.podAddr4, 3, 0.2).received, 3, 'small frames pass at MTU 1500');
    lab.exec(lab.a.ns, 'ip', ['link', 'set', 'dev', lab.a.uplink, 'mtu', String(MTU)]);
    await log.until(/"event":"uplink-lost".*"code":"ERR_UPLINK_MTU_CHANGED".*from 1500 to 9000/);
    await log.until(/"event":"recovered".*"mode":"afpacket"/, 1, 20_000);
    await jumboTraffic(lab, [p], 4);
    await p.stop();
    noXdp(lab, lab.a.ns, lab.a.uplink);
  });
});
