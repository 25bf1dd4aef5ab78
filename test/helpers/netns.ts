/**
 * Network namespaces for kernel and lab tests. Every namespace gets a unique name
 * (`ph-<pid>-<counter>-<tag>`), and `withNetns` removes it even when the test fails. Nothing here
 * touches the machine's own interfaces: links are created inside namespaces we made.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

let counter = 0;

export interface Netns {
  readonly name: string;
  /** Runs a command inside the namespace and returns stdout (throws on non-zero exit). */
  exec(cmd: string, args: readonly string[], opts?: { input?: string; allowFail?: boolean }): string;
  /** `ip <args>` inside the namespace. */
  ip(...args: string[]): string;
  /** Spawns a long-running process inside the namespace. */
  spawn(cmd: string, args: readonly string[]): ChildProcess;
  close(): void;
}

export function createNetns(tag: string): Netns {
  const name = `ph-${process.pid}-${++counter}-${tag}`.slice(0, 48);
  execFileSync('ip', ['netns', 'add', name]);
  const ns: Netns = {
    name,
    exec(cmd, args, opts = {}) {
      try {
        return execFileSync('ip', ['netns', 'exec', name, cmd, ...args], {
          encoding: 'utf8',
          input: opts.input,
          stdio: ['pipe', 'pipe', 'pipe'],
        });
      } catch (err) {
        if (opts.allowFail) return '';
        const e = err as { stderr?: string; message: string };
        throw new Error(`in netns ${name}: ${cmd} ${args.join(' ')}: ${e.stderr || e.message}`);
      }
    },
    ip(...args) {
      return ns.exec('ip', args);
    },
    spawn(cmd, args) {
      return spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    },
    close() {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    },
  };
  try {
    ns.ip('link', 'set', 'lo', 'up');
  } catch (err) {
    ns.close();
    throw err;
  }
  return ns;
}

/** Runs `fn` with fresh namespaces and always deletes them afterwards. */
export async function withNetns<T>(tags: readonly string[], fn: (...ns: Netns[]) => Promise<T> | T): Promise<T> {
  const made: Netns[] = [];
  try {
    for (const t of tags) made.push(createNetns(t));
    return await fn(...made);
  } finally {
    for (const n of made) n.close();
  }
}

/** A veth pair between two namespaces (or both ends in one when `b` is omitted). */
export function addVeth(a: Netns, aName: string, b: Netns, bName: string, opts: { queues?: number; mtu?: number } = {}): void {
  const q = opts.queues ?? 1;
  a.ip(
    'link',
    'add',
    aName,
    'numtxqueues',
    String(q),
    'numrxqueues',
    String(q),
    'type',
    'veth',
    'peer',
    'name',
    bName,
    'netns',
    b.name,
    'numtxqueues',
    String(q),
    'numrxqueues',
    String(q),
  );
  if (opts.mtu) {
    a.ip('link', 'set', aName, 'mtu', String(opts.mtu));
    b.ip('link', 'set', bName, 'mtu', String(opts.mtu));
  }
  a.ip('link', 'set', aName, 'up');
  b.ip('link', 'set', bName, 'up');
}
