/** Runs the pinhole CLI as a user would (bin/pinhole.js), optionally inside a network namespace. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PINHOLE_BIN = fileURLToPath(new URL('../../bin/pinhole.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: readonly string[], opts: { netns?: string; timeoutMs?: number } = {}): CliResult {
  const argv = opts.netns
    ? ['ip', 'netns', 'exec', opts.netns, process.execPath, PINHOLE_BIN, ...args]
    : [process.execPath, PINHOLE_BIN, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
