/**
 * Uplink scenarios on the three-node topology (netns.ts buildCrossConnect):
 *
 *   [gen] g0 ──veth── up0 [mid] out0 ──veth── s0 [sink]
 *
 * The generator (trafficgen.ts, pinned to one CPU) sends UDP to port 4789 from g0 into up0. The
 * sink runs a counting XDP program that drops every frame (a receiving pinhole takes frames off
 * the wire the same way), so "delivered" is counted in the kernel, not by a process reading
 * interface files.
 *
 *   scenario        mode      what runs on mid                                   counted at
 *   cross-connect   afxdp     pinhole uplink --mode afxdp --to out0              sink
 *                   afpacket  pinhole uplink --mode afpacket --to out0           sink
 *                   kernel    IP forwarding (ip_forward=1, route to the sink)    sink
 *                   ceiling   XDP program on up0: bpf_redirect to out0           sink
 *                   c         bench/c/xdp-fwd.c up0 → out0 (redirect-all on up0) sink
 *   receive-drop    afxdp     pinhole uplink --mode afxdp                        its rxPackets
 *                   afpacket  pinhole uplink --mode afpacket                     its rxPackets
 *                   kernel    the kernel's UDP receive path (no socket: dropped) Udp NoPorts
 *                   ceiling   XDP program on up0: XDP_DROP                       the program
 *                   c         bench/c/xdp-fwd.c --drop                           its rxPackets
 *
 * Frames: 64 bytes steady and bursty (Mpps), 1500 bytes steady (Gbit/s). Cross-connect frames
 * are addressed to the sink (198.19.0.2) so the kernel can route them; receive-drop frames to
 * mid's own address, as tunnel traffic to a host is. Forwarders are pinned to another CPU than
 * the generator: the C forwarder whole (one thread), pinhole's dataplane workers (`--cpus`) while
 * its main thread and the runtime's threads run beside the generator, as with a dedicated
 * dataplane core. Each run starts every forwarder afresh, and the runs go round all modes in turn,
 * so a noisy neighbour on a shared machine spreads over the modes instead of hitting one.
 */
import { buildFrame } from '../../packet/build.ts';
import { umemFrames, xskFrameSize, xskRings, XSK_DEFAULT_RX_RING } from '../../uplink/xsk/sizing.ts';
import { PinholeError } from '../../sys/index.ts';
import { ForwarderProcess, PINHOLE_BIN } from './forwarder.ts';
import { addCpuBusy, checkAborted, measureRate, recordFailure, settle, type ScenarioContext } from './measure.ts';
import { buildCrossConnect, linkAttr, nsExec, udpNoPorts, type CrossConnect } from './netns.ts';
import { BENCH_MODES, formatNumber, type BenchMode, type Better } from './report.ts';
import { GeneratorProcess, type TrafficShape } from './trafficgen.ts';
import { attachIn, loadCounting, loadRedirectAllFor, type Attached, type CountingProgram } from './xdp.ts';

export type UplinkScenario = 'cross-connect' | 'receive-drop';
const SCENARIOS: UplinkScenario[] = ['cross-connect', 'receive-drop'];
const QUEUES = 2;

interface Case {
  size: 64 | 1500;
  shape: TrafficShape;
  metric: string;
  unit: 'Mpps' | 'Gbit/s';
}
const CASES: Case[] = [
  { size: 64, shape: 'steady', metric: '64 B steady', unit: 'Mpps' },
  { size: 64, shape: 'bursty', metric: '64 B bursty', unit: 'Mpps' },
  { size: 1500, shape: 'steady', metric: '1500 B steady', unit: 'Gbit/s' },
];

export const UPLINK_NOTES = [
  'cross-connect / receive-drop: [gen] g0 → up0 [mid] out0 → s0 [sink] (veth, 2 queues, copy-mode AF_XDP); generator = kernel live frames (BPF_PROG_TEST_RUN), steady = one long call, bursty = 65,536 frames per call; sink counts with an XDP program.',
  'modes: afxdp/afpacket = `pinhole uplink` (--to out0 for the cross-connect); kernel = IP forwarding (cross-connect) or the UDP receive path to a closed port (receive-drop); ceiling = an XDP program on up0 doing bpf_redirect to out0 / XDP_DROP; c = bench/c/xdp-fwd.c, the same algorithm as pinhole in C.',
  'CPU per packet = the forwarder process’s utime + stime over the run ÷ frames delivered (on veth it includes the receiving peer’s softirq run in the sender’s context); kernel and ceiling work in softirq and have no process to measure.',
];

interface Handle {
  count: () => number | Promise<number>;
  proc?: ForwarderProcess;
  close: () => Promise<void>;
}

function frameOf(t: CrossConnect, scenario: UplinkScenario, size: number): Uint8Array {
  return buildFrame({
    eth: { dst: t.mac.up0, src: t.mac.g0 },
    ipv4: { src: t.addr.gen, dst: scenario === 'cross-connect' ? t.addr.sink : t.addr.up0 },
    udp: { sport: 40000, dport: 4789 },
    payload: new Uint8Array(size - 14 - 20 - 8),
  });
}

/**
 * The C reference on mid (bench/c/xdp-fwd.c): a redirect-all program attached to up0, whose
 * XSKMAP the child gets as fd 3 (`fds`), and the command line — the same RX ring, UMEM and frame
 * size as pinhole's (its --ring sizes every ring of both sockets; the frame size is pinhole's for
 * the lab's veths, at the kernel's default MTU of 1500). `close()` detaches and unloads.
 */
export function cForwarderSetup(
  t: CrossConnect,
  path: string,
  o: { xc: boolean; ringSize?: number },
): { argv: string[]; fds: number[]; close(): void } {
  const ra = loadRedirectAllFor(QUEUES);
  let att: Attached;
  try {
    att = attachIn(t.mid, 'up0', ra.program.fd);
  } catch (err) {
    ra.close();
    throw err;
  }
  const rings = xskRings({ rx: o.ringSize ?? XSK_DEFAULT_RX_RING });
  const argv = [path, '--in', 'up0', '--xskmap-fd', '3', '--queues', String(QUEUES), '--stats-ms', '20'];
  argv.push(...(o.xc ? ['--out', 'out0'] : ['--drop']));
  argv.push('--ring', String(rings.rx), '--frames', String(umemFrames(rings)), '--frame-size', String(xskFrameSize([1500])));
  return {
    argv,
    fds: [ra.maps.xsks.fd],
    close: () => {
      try {
        att.close();
      } finally {
        ra.close();
      }
    },
  };
}

/** `auto` is a VXLAN configuration (AF_XDP uplink, AF_PACKET workloads): nothing of its own here. */
const UPLINK_BENCH_MODES = BENCH_MODES.filter((m) => m !== 'auto');

async function openMode(
  ctx: ScenarioContext,
  t: CrossConnect,
  sink: CountingProgram,
  scenario: UplinkScenario,
  mode: BenchMode,
): Promise<Handle> {
  const xc = scenario === 'cross-connect';
  const fromStats = (p: ForwarderProcess) => async (): Promise<number> => (await p.freshStats()).rxPackets;
  const startProc = async (
    label: string,
    argv: string[],
    fds?: number[],
    cpu = ctx.fwdCpu,
  ): Promise<{ p: ForwarderProcess; done: () => void }> => {
    const p = ForwarderProcess.start({ label, ns: t.mid, cpu, nice: ctx.nice, argv, ...(fds ? { fds } : {}) });
    const done = ctx.cleanup.add(() => p.kill());
    try {
      await p.ready;
    } catch (err) {
      done();
      throw err;
    }
    return { p, done };
  };
  switch (mode) {
    case 'afxdp':
    case 'afpacket': {
      const argv = [process.execPath, PINHOLE_BIN, 'uplink', '--iface', 'up0', '--mode', mode, '--port', '4789', '--stats-interval', '20'];
      if (xc) argv.push('--to', 'out0');
      if (mode === 'afxdp' && ctx.ringSize !== undefined) argv.push('--ring-size', String(ctx.ringSize));
      // The workers alone on the forwarder's CPU (--cpus), the main thread (stats every 20 ms) and
      // the runtime's threads with the generator: the C forwarder is one thread, all of it there.
      if (ctx.fwdCpu !== undefined) argv.push('--cpus', String(ctx.fwdCpu));
      const { p, done } = await startProc(`pinhole uplink ${mode}`, argv, undefined, ctx.fwdCpu === undefined ? undefined : ctx.genCpu);
      const ready = await p.ready;
      if (ready.mode !== mode) {
        done();
        throw new PinholeError('ERR_BENCH_FORWARDER', `pinhole uplink: asked for ${mode}, got ${JSON.stringify(ready)}`);
      }
      return {
        count: xc ? () => sink.count() : fromStats(p),
        proc: p,
        close: async () => {
          try {
            await p.stop();
          } finally {
            done();
          }
        },
      };
    }
    case 'kernel': {
      if (!xc) return { count: () => udpNoPorts(t.mid), close: async () => undefined };
      nsExec(t.mid, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      return {
        count: () => sink.count(),
        close: async () => void nsExec(t.mid, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']),
      };
    }
    case 'ceiling': {
      const prog = xc
        ? loadCounting('ph_bench_redir', { kind: 'redirect', ifindex: Number(linkAttr(t.mid, 'out0', 'ifindex')) })
        : loadCounting('ph_bench_drop', { kind: 'drop' });
      const undo = ctx.cleanup.add(() => prog.close());
      let att: Attached;
      try {
        att = attachIn(t.mid, 'up0', prog.program.fd);
      } catch (err) {
        undo();
        throw err;
      }
      const detach = ctx.cleanup.add(() => att.close());
      return {
        count: xc ? () => sink.count() : () => prog.count(),
        close: async () => {
          detach();
          undo();
        },
      };
    }
    case 'auto':
      throw new PinholeError('ERR_BENCH_SKIPPED', 'auto is a VXLAN configuration, not an uplink mode');
    case 'c': {
      const c = ctx.c;
      if (!('path' in c)) throw new PinholeError('ERR_BENCH_SKIPPED', c.skipped);
      const setup = cForwarderSetup(t, c.path, { xc, ...(ctx.ringSize !== undefined ? { ringSize: ctx.ringSize } : {}) });
      const undo = ctx.cleanup.add(() => setup.close());
      let started: { p: ForwarderProcess; done: () => void };
      try {
        started = await startProc('C forwarder', setup.argv, setup.fds);
      } catch (err) {
        undo();
        throw err;
      }
      const { p, done } = started;
      return {
        count: xc ? () => sink.count() : fromStats(p),
        proc: p,
        close: async () => {
          try {
            await p.stop();
          } finally {
            done();
            undo();
          }
        },
      };
    }
  }
}

/** Runs both uplink scenarios for every mode, `ctx.profile.runs` times; samples go into ctx.samples. */
export async function runUplinkScenarios(ctx: ScenarioContext): Promise<void> {
  const { profile, progress, samples } = ctx;
  const t = buildCrossConnect(`${ctx.prefix}-xc`, QUEUES);
  const closeTopo = ctx.cleanup.add(() => t.close());
  const gen = GeneratorProcess.start(t.gen, ctx.genCpu, ctx.nice);
  const closeGen = ctx.cleanup.add(() => gen.close());
  const sink = loadCounting('ph_bench_sink', { kind: 'drop' });
  const closeSink = ctx.cleanup.add(() => sink.close());
  let detachSink: (() => void) | undefined;
  try {
    const sinkAtt = attachIn(t.sink, 's0', sink.program.fd);
    detachSink = ctx.cleanup.add(() => sinkAtt.close());
    const frames: Record<string, Uint8Array> = {};
    for (const s of SCENARIOS) for (const c of CASES) frames[`${s} ${c.size}`] = frameOf(t, s, c.size);
    for (let r = 1; r <= profile.runs; r++) {
      for (const scenario of SCENARIOS) {
        for (const mode of UPLINK_BENCH_MODES) {
          checkAborted(ctx.signal);
          const key = (metric: string, unit: string, better: Better = 'higher') => ({ scenario, mode, metric, unit, better });
          let h: Handle;
          try {
            h = await openMode(ctx, t, sink, scenario, mode);
          } catch (err) {
            const e = err as PinholeError;
            if (e.code === 'ERR_BENCH_SKIPPED') {
              for (const c of CASES) samples.skip(key(c.metric, c.unit), e.message);
              if (r === 1) progress.step(`${scenario} ${mode}: skipped (${e.message})`);
            } else {
              recordFailure(ctx, `${scenario} ${mode} run ${r}: starting`, err);
            }
            continue;
          }
          try {
            // Warm-up (not measured): JIT, rings, page cache of the UMEMs.
            await gen.send({ iface: 'g0', frame: frames[`${scenario} 64`]!, seconds: 0.2, shape: 'steady' });
            await settle(h.count);
            let rss = 0;
            for (const c of CASES) {
              const s = await measureRate(
                gen,
                { iface: 'g0', frame: frames[`${scenario} ${c.size}`]!, seconds: profile.sendSeconds, shape: c.shape },
                h.count,
                { proc: h.proc, cpus: { gen: ctx.genCpu, fwd: ctx.fwdCpu } },
              );
              const value = c.unit === 'Mpps' ? s.pps / 1e6 : (s.pps * c.size * 8) / 1e9;
              samples.add(key(c.metric, c.unit), value);
              let extra = '';
              if (c.size === 64 && c.shape === 'steady' && s.cpuNsPerPacket !== undefined) {
                samples.add(key('CPU per packet, 64 B steady', 'ns', 'lower'), s.cpuNsPerPacket);
                extra = `, ${formatNumber(s.cpuNsPerPacket)} ns CPU/packet`;
              }
              if (c.size === 64 && c.shape === 'steady') extra += addCpuBusy(samples, key, s);
              if (s.rssMiB !== undefined) rss = Math.max(rss, s.rssMiB);
              progress.step(`${scenario} ${mode} ${c.metric} run ${r}/${profile.runs}: ${formatNumber(value)} ${c.unit}${extra}`);
            }
            if (h.proc) samples.add(key('resident memory', 'MiB', 'lower'), rss);
          } catch (err) {
            recordFailure(ctx, `${scenario} ${mode} run ${r}`, err);
          } finally {
            await h.close().catch((err: unknown) => recordFailure(ctx, `${scenario} ${mode} run ${r}: stopping`, err));
          }
        }
      }
    }
  } finally {
    closeGen();
    detachSink?.();
    closeTopo();
    closeSink();
  }
}
