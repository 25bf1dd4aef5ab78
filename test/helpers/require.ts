/**
 * Tier gates. Kernel and lab tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF). Without it
 * they FAIL with a clear message — CI runs as root, and a silent skip would hide a broken tier.
 */
import { readFileSync } from 'node:fs';
import { sweepNetnsOnExit } from './sweep.ts';

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('this test tier needs root (run `sudo npm test`, or `npm run test:unit` for the unprivileged tier)');
  }
  sweepNetnsOnExit();
}

/** Fails unless the running kernel is at least `version` (e.g. '5.9'), naming the feature. */
export function requireKernel(version: string, feature: string): void {
  const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  const have = release.split(/[.-]/).map((x) => Number.parseInt(x, 10));
  const want = version.split('.').map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < want.length; i++) {
    const h = have[i] ?? 0;
    const w = want[i] ?? 0;
    if (h > w) return;
    if (h < w) throw new Error(`${feature} needs kernel ${version}, this is ${release}`);
  }
}
