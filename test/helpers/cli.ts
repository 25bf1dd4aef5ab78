/**
 * Runs the pinhole CLI as a user would (bin/pinhole.js), optionally inside a network namespace:
 * to its end (`runCli`), or left running with its output collected (`startCli`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { lineMatching } from './output.ts';

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

export interface CliProc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has ended and all its output is read ('close'). */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once stdout has a line matching `re`; rejects if the process ends first. */
  line(re: RegExp, ms?: number): Promise<void>;
}

/** `pinhole ARGS` left running inside `netns` (e.g. `neigh --watch --json`). */
export function startCli(netns: string, args: readonly string[]): CliProc {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, PINHOLE_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    closed,
    line: (re, ms) => lineMatching(child, () => stdout, re, ms),
  };
}
