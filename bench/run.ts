/**
 * `npm run bench`: the XDP program cost and netlink mirror benchmarks, then the `pinhole bench`
 * suite (uplink, VXLAN, host cost) writing bench/results/bench.{json,md,svg}. Arguments go to
 * the suite (`npm run bench -- --quick`). Each creates and removes what it needs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

const node = (args: string[]): number => spawnSync(process.execPath, args, { stdio: 'inherit' }).status ?? 1;

let failed = 0;
for (const b of ['bench/pinhole.ts', 'bench/netlink.ts']) {
  console.log(`\n=== ${b}`);
  if (node(['--import', 'tsx', b]) !== 0) failed++;
}
console.log('\n=== pinhole bench');
mkdirSync('bench/results', { recursive: true });
const out = ['--json', 'bench/results/bench.json', '--svg', 'bench/results/bench.svg', '--markdown', 'bench/results/bench.md'];
if (node(['bin/pinhole.js', 'bench', ...out, ...process.argv.slice(2)]) !== 0) failed++;
process.exit(failed ? 1 : 0);
