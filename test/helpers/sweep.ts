/**
 * The last line of defence against leftover namespaces: every privileged test file (through
 * requireRoot) removes, when its process ends, each network namespace named `ph-<its pid>-...`
 * that is still there — whatever made it (createNetns, buildLab with a `ph-<pid>-` prefix) and
 * whatever went wrong (a setup step that threw before the test's `finally` existed, a test
 * timeout: node:test ends a file's process with SIGTERM). Processes still inside such a namespace
 * are killed first, or the namespace would outlive its name. The tests' own `close()` calls stay
 * the normal path; this only sweeps what they missed, and says so on stderr.
 */
import { execFileSync } from 'node:child_process';

let installed = false;

function sweep(): void {
  const prefix = `ph-${process.pid}-`;
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.startsWith(prefix));
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      process.stderr.write(`test cleanup: removed leftover network namespace ${name}\n`);
    } catch {
      // best effort: never fail the exit path
    }
  }
}

export function sweepNetnsOnExit(): void {
  if (installed) return;
  installed = true;
  process.on('exit', sweep);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      sweep();
      // The default action now: the process ends by the signal, as it would have.
      process.kill(process.pid, sig);
    });
  }
}
