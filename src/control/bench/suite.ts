/**
 * `pinhole bench`: the whole suite in one invocation — the uplink scenarios (uplink.ts) and the
 * VXLAN and host scenarios (vxlan.ts) — every mode side by side, each figure over several runs,
 * in private network namespaces (prefix `phb-<pid>`) that are removed at the end, on failure and
 * on SIGINT/SIGTERM (a registry of synchronous teardown steps runs from the signal handler, so
 * a Ctrl-C never leaves namespaces, processes or XDP programs behind).
 *
 * Placement on a machine with ≥ 2 CPUs: the traffic generator on CPU 0, the forwarder under
 * test on the last CPU (taskset), both at nice -10 (measure.ts BENCH_NICE); the kernel's own
 * work goes wherever the kernel runs it.
 *
 * Profiles: full (5 runs, 1.5 s sends, 3 s iperf3; ~10 min on 2 vCPUs) and quick (2 runs, 0.75 s
 * sends, 1 s iperf3; ~2–3 min).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PinholeError } from '../../sys/index.ts';
import { cleanupLab } from '../lab/topology.ts';
import { buildCForwarder } from './cref.ts';
import { describeMachine } from './machine.ts';
import { BENCH_NICE, Cleanup, PROFILES, type ScenarioContext } from './measure.ts';
import type { Progress } from './progress.ts';
import { SampleSet, headroomNote, type BenchReport } from './report.ts';
import { runUplinkScenarios, UPLINK_NOTES } from './uplink.ts';
import { runVxlanScenarios, VXLAN_NOTES } from './vxlan.ts';

export type BenchPart = 'uplink' | 'vxlan';
export const BENCH_PARTS: readonly BenchPart[] = ['uplink', 'vxlan'];

export interface BenchOptions {
  quick: boolean;
  /** Runs per figure (default: 5 full, 2 quick). */
  runs?: number;
  /** Only these parts (default: all). */
  only?: readonly BenchPart[];
  /** Hidden (measuring the default): AF_XDP RX ring size of the uplink forwarders, pinhole and C. */
  ringSize?: number;
  progress: Progress;
}

function bpfStatsEnabled(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() !== '0';
  } catch {
    return false;
  }
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const machine = describeMachine();
  const base = PROFILES[o.quick ? 'quick' : 'full'];
  const profile = { ...base, runs: o.runs ?? base.runs };
  const parts = o.only && o.only.length ? o.only : BENCH_PARTS;
  const n = cpus().length;
  const genCpu = n >= 2 ? 0 : undefined;
  const fwdCpu = n >= 2 ? n - 1 : undefined;
  const prefix = `phb-${process.pid}`;
  const tmp = mkdtempSync(join(tmpdir(), 'ph-bench-'));
  const cleanup = new Cleanup();
  // Registered first, so it runs last: whatever a failed step left in our namespaces.
  cleanup.add(() => {
    cleanupLab(prefix, { kill: true });
    rmSync(tmp, { recursive: true, force: true });
  });
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    o.progress.step(`${sig}: stopping, removing the lab`);
    abort.abort(new PinholeError('ERR_BENCH_INTERRUPTED', `interrupted by ${sig}`));
    cleanup.runAll();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const notes = [
    `Placement: ${genCpu === undefined ? 'not pinned (1 CPU)' : `traffic generator on CPU ${genCpu}, forwarder under test on CPU ${fwdCpu} (taskset; in the vxlan scenario pinhole's dataplane worker alone there, uplink.cpus, with its main thread, the runtime's threads and the pods' iperf3 and ping on CPU ${genCpu})`}, both at nice ${BENCH_NICE}. The machine may be shared with other work: compare modes within one run (ratios), not absolute numbers across runs.`,
  ];
  if (bpfStatsEnabled())
    notes.push('kernel.bpf_stats_enabled was on during this run: it costs about a third of a CPU and lowers every XDP figure.');

  o.progress.step(`pinhole bench (${o.quick ? 'quick' : 'full'}): ${profile.runs} runs per figure, parts: ${parts.join(', ')}`);
  o.progress.step(`machine: ${machine.cpuModel}, ${machine.cpus} CPUs, Linux ${machine.kernel}, load ${machine.loadAverage.toFixed(2)}`);
  if (o.ringSize !== undefined) {
    notes.push(`AF_XDP RX ring of the uplink forwarders (pinhole and C): ${o.ringSize} entries (--ring-size).`);
    o.progress.step(`AF_XDP RX ring: ${o.ringSize}`);
  }
  const c = buildCForwarder();
  if ('path' in c) {
    cleanup.add(() => c.close());
    o.progress.step('C reference forwarder built (cc -O2)');
  } else {
    o.progress.step(`C reference forwarder skipped: ${c.skipped}`);
  }
  const samples = new SampleSet();
  const failures: string[] = [];
  const ctx: ScenarioContext = {
    profile,
    prefix,
    tmp,
    genCpu,
    fwdCpu,
    nice: BENCH_NICE,
    c,
    progress: o.progress,
    cleanup,
    samples,
    failures,
    signal: abort.signal,
    ...(o.ringSize !== undefined ? { ringSize: o.ringSize } : {}),
  };
  try {
    if (parts.includes('uplink')) {
      notes.push(...UPLINK_NOTES);
      await runUplinkScenarios(ctx);
    }
    if (parts.includes('vxlan')) {
      notes.push(...VXLAN_NOTES);
      await runVxlanScenarios(ctx);
    }
  } catch (err) {
    if (abort.signal.aborted) throw abort.signal.reason;
    throw err;
  } finally {
    cleanup.runAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const results = samples.results();
  const headroom = headroomNote(results);
  if (headroom) notes.push(headroom);
  notes.push(`1-minute load average: ${machine.loadAverage.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end.`);
  o.progress.step(failures.length ? `done, ${failures.length} step(s) failed` : 'done');
  for (const f of failures) notes.push(`FAILED ${f}`);
  return {
    machine,
    quick: o.quick,
    runs: profile.runs,
    elapsedSeconds: o.progress.elapsed(),
    notes,
    failures: failures.length,
    results,
  };
}
