/**
 * What pinhole costs the host's own traffic, measured many times side by side: iperf3 TCP from
 * node B to node A's own address (outside any tunnel) with node A running
 *   kernel   nothing attached;
 *   ceiling  a bare XDP_PASS program on its uplink (what any XDP program costs on veth: the
 *            frame is copied into XDP headroom and the peer loses TSO; drivers/net/veth.c);
 *   pinhole  `pinhole run` with one VXLAN connection (the pinhole program on the uplink, AF_XDP
 *            sockets, its workers and main thread running).
 * The three alternate within each round, so a round's ratios compare like with like on a shared
 * machine; min/median/max of the per-round ratios. The question is pinhole ÷ ceiling: the
 * pinhole program's own cost; pinhole ÷ kernel adds what veth charges for XDP at all.
 *
 * Root; `node --import tsx bench/host-cost.ts [--rounds 7] [--seconds 3]`. Results: a table on
 * stdout and bench/results/host-cost.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ForwarderProcess, PINHOLE_BIN } from '../src/control/bench/forwarder.ts';
import { attachIn, loadPass } from '../src/control/bench/xdp.ts';
import { buildLab } from '../src/control/lab/topology.ts';
import { iperf, startIperfServer } from '../src/control/lab/traffic.ts';
import { printTable, summarise } from './stats.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, seconds: { type: 'string', default: '3' } } });
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const HOST_PORT = 5202;

const lab = buildLab({
  prefix: `phhc-${process.pid % 10000}`,
  underlay: 4,
  sides: { a: 'pinhole', b: 'kernel' },
  uplinkQueues: 2,
  workloadQueues: 2,
  uplinkMtu: 1570,
  podChecksumOffload: true,
});
const dir = mkdtempSync(join(tmpdir(), 'ph-host-cost-'));
const gbps: Record<'kernel' | 'ceiling' | 'pinhole', number[]> = { kernel: [], ceiling: [], pinhole: [] };
try {
  const wa = lab.a.workloads[0]!;
  const config = join(dir, 'a.yaml');
  writeFileSync(
    config,
    [
      `uplink: { interface: ${lab.a.uplink}, mode: afxdp }`,
      `api: { socket: ${join(dir, 'a.sock')} }`,
      'connections:',
      `  - { name: pod-a, local: { interface: ${wa.iface} }, vxlan: { vni: ${wa.vni}, remote: "${lab.b.tunnelAddr}" } }`,
      '',
    ].join('\n'),
  );
  const server = await startIperfServer(lab.a.ns, { port: HOST_PORT, bind: lab.a.underlay4, timeoutMs: 5000 });
  const tcp = async (): Promise<number> => {
    const r = await iperf(lab.b.ns, { server: lab.a.underlay4, port: HOST_PORT, seconds });
    return (r.receivedBps ?? r.sentBps) / 1e9;
  };
  try {
    for (let i = 1; i <= rounds; i++) {
      gbps.kernel.push(await tcp());
      const pass = loadPass();
      try {
        const att = attachIn(lab.a.ns, lab.a.uplink, pass.fd);
        try {
          gbps.ceiling.push(await tcp());
        } finally {
          att.close();
        }
      } finally {
        pass.close();
      }
      const p = ForwarderProcess.start({
        label: 'pinhole run',
        ns: lab.a.ns,
        cpu: 1,
        nice: -10,
        argv: [process.execPath, PINHOLE_BIN, 'run', '--config', config],
      });
      try {
        await p.ready;
        gbps.pinhole.push(await tcp());
      } finally {
        await p.stop().catch(() => p.kill());
      }
      const last = (k: keyof typeof gbps): string => gbps[k][i - 1]!.toFixed(2);
      console.error(`round ${i}/${rounds}: kernel ${last('kernel')}, ceiling ${last('ceiling')}, pinhole ${last('pinhole')} Gbit/s`);
    }
  } finally {
    server.stop();
  }
} finally {
  lab.close();
  rmSync(dir, { recursive: true, force: true });
}
const ratio = (a: number[], b: number[]): number[] => a.map((x, i) => x / b[i]!);
const rows = [
  { name: 'kernel', summary: summarise(gbps.kernel) },
  { name: 'ceiling (bare XDP_PASS)', summary: summarise(gbps.ceiling) },
  { name: 'pinhole', summary: summarise(gbps.pinhole) },
];
const ratios = [
  { name: 'pinhole ÷ ceiling', summary: summarise(ratio(gbps.pinhole, gbps.ceiling)), note: "the pinhole program's own cost" },
  { name: 'pinhole ÷ kernel', summary: summarise(ratio(gbps.pinhole, gbps.kernel)) },
  { name: 'ceiling ÷ kernel', summary: summarise(ratio(gbps.ceiling, gbps.kernel)), note: 'any XDP program on veth' },
];
printTable(`host TCP node B → node A, ${rounds} rounds of ${seconds} s`, 'Gbit/s', rows);
printTable('per-round ratios', '×', ratios);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/host-cost.json', import.meta.url), JSON.stringify({ rounds, seconds, gbps, ratios }, null, 2) + '\n');
