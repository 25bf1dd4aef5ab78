/**
 * Runs one part of the `pinhole bench` suite (src/control/bench/) from a bench/ script and writes
 * bench/results/<part>.{json,md,svg}. Options: --quick, --repeat N (runs per figure), --ring-size N
 * (AF_XDP RX ring of the uplink forwarders).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import '../src/sys/index.ts';
import { Progress } from '../src/control/bench/progress.ts';
import { renderJson, renderMarkdown, renderSvg } from '../src/control/bench/report.ts';
import { runBench, type BenchPart } from '../src/control/bench/suite.ts';

export async function runPart(part: BenchPart): Promise<void> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, repeat: { type: 'string' }, 'ring-size': { type: 'string' } },
  });
  const report = await runBench({
    quick: values.quick,
    ...(values.repeat ? { runs: Number(values.repeat) } : {}),
    only: [part],
    ...(values['ring-size'] ? { ringSize: Number(values['ring-size']) } : {}),
    progress: new Progress((l) => process.stderr.write(l + '\n')),
  });
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${part}.json`, renderJson(report));
  writeFileSync(`bench/results/${part}.svg`, renderSvg(report));
  writeFileSync(`bench/results/${part}.md`, renderMarkdown(report));
  process.stdout.write(renderMarkdown(report));
  console.log(`\nbench/results/${part}.{json,md,svg}`);
}
