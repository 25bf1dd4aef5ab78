/**
 * `pinhole bench [--quick] [--runs N] [--only uplink|vxlan]... [--json FILE] [--svg FILE] [--markdown FILE]`
 *
 * The benchmark suite (control/bench/suite.ts) on a private lab of network namespaces: pinhole
 * AF_XDP and AF_PACKET, the kernel's own datapath, the in-kernel XDP ceiling and a C reference
 * forwarder, side by side. Progress lines go to stderr while it runs; the markdown table goes to
 * stdout at the end; --json, --svg and --markdown also write the report to files. Root (namespaces,
 * BPF, XDP). The full suite takes about 10 minutes on 2 vCPUs, --quick 2–3.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PinholeError } from '../../sys/index.ts';
import { Progress } from '../bench/progress.ts';
import { renderJson, renderMarkdown, renderSvg } from '../bench/report.ts';
import { BENCH_PARTS, runBench, type BenchPart } from '../bench/suite.ts';
import { requireCaps } from '../caps.ts';
import type { CommandIO } from '../io.ts';
import { parseRingSize } from '../args.ts';

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      runs: { type: 'string' },
      only: { type: 'string', multiple: true, default: [] },
      json: { type: 'string' },
      svg: { type: 'string' },
      markdown: { type: 'string' },
      // Hidden: the AF_XDP RX ring of the uplink forwarders (how the default was measured).
      'ring-size': { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new PinholeError('ERR_CLI_USAGE', `bench: unexpected argument ${positionals[0]}`);
  let runs: number | undefined;
  if (values.runs !== undefined) {
    runs = Number(values.runs);
    if (!/^\d+$/.test(values.runs) || runs < 1 || runs > 100) throw new PinholeError('ERR_CLI_USAGE', '--runs: an integer 1..100');
  }
  for (const p of values.only) {
    if (!BENCH_PARTS.includes(p as BenchPart)) throw new PinholeError('ERR_CLI_USAGE', `--only ${p}: expected ${BENCH_PARTS.join(' or ')}`);
  }
  const ringSize = values['ring-size'] === undefined ? undefined : parseRingSize(values['ring-size']);
  requireCaps('bench', ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN', 'CAP_BPF']);
  const progress = new Progress((line) => io.err(line));
  let report;
  try {
    report = await runBench({
      quick: values.quick,
      ...(runs !== undefined ? { runs } : {}),
      only: values.only as BenchPart[],
      ...(ringSize !== undefined ? { ringSize } : {}),
      progress,
    });
  } catch (err) {
    if ((err as PinholeError).code !== 'ERR_BENCH_INTERRUPTED') throw err;
    io.err(`pinhole: ERR_BENCH_INTERRUPTED: ${(err as Error).message}; the lab was removed`);
    return 130;
  }
  const markdown = renderMarkdown(report);
  const files: [string | undefined, string][] = [
    [values.json, renderJson(report)],
    [values.svg, renderSvg(report)],
    [values.markdown, markdown],
  ];
  for (const [file, text] of files) {
    if (file === undefined) continue;
    writeFileSync(file, text);
    progress.step(`wrote ${file}`);
  }
  io.out(markdown.trimEnd());
  if (report.failures) {
    io.err(`pinhole: ERR_BENCH_FAILED: ${report.failures} step(s) failed (listed at the end of the table)`);
    return 1;
  }
  return 0;
}
