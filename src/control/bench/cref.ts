/**
 * The C reference forwarder (bench/c/xdp-fwd.c): compiled at bench time with the system compiler
 * (`cc -O2`) into a temporary directory, run as a child of the bench. A bench-only tool: when the
 * source, the compiler or the kernel headers are missing, its figures are reported as skipped
 * with the reason and the rest of the suite runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const C_SOURCE = fileURLToPath(new URL('../../../bench/c/xdp-fwd.c', import.meta.url));

export type CForwarder = { path: string; close(): void } | { skipped: string };

export function buildCForwarder(source: string = C_SOURCE, compiler = 'cc'): CForwarder {
  if (!existsSync(source)) return { skipped: `no source at ${source}` };
  const dir = mkdtempSync(join(tmpdir(), 'ph-bench-c-'));
  const path = join(dir, 'xdp-fwd');
  const r = spawnSync(compiler, ['-O2', '-Wall', '-o', path, source, '-lpthread'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    const e = r.error as NodeJS.ErrnoException | undefined;
    if (e?.code === 'ENOENT') return { skipped: `no C compiler (${compiler}) on PATH` };
    const why = (r.stderr || e?.message || `exit ${r.status}`).trim().split('\n').slice(0, 3).join(' ');
    return { skipped: `${compiler} failed: ${why}` };
  }
  return { path, close: () => rmSync(dir, { recursive: true, force: true }) };
}
