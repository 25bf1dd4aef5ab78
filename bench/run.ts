/** `npm run bench`: runs every benchmark in turn (each creates and removes what it needs). */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const benches = ['bench/pinhole.ts', 'bench/netlink.ts', 'bench/vxlan.ts'].filter((b) => existsSync(b));
let failed = 0;
for (const b of benches) {
  console.log(`\n=== ${b}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', b, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
