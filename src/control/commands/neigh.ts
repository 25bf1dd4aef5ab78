/**
 * `pinhole neigh [--watch] [--json] [--family 4|6] [--dev NAME]`: the kernel's IPv4/IPv6
 * neighbour table as pinhole's rtnetlink mirror sees it. `--watch` keeps the mirror open and
 * prints every change (one JSON object per line with --json) until it is stopped: SIGINT,
 * SIGTERM, SIGQUIT, SIGHUP or a closed stdout end it cleanly with exit 0, like every long-running
 * command (../lifecycle.ts).
 *
 * The watch stream is exact: the table (`present`), then `add`/`update`/`del` lines. When
 * notifications were lost (the kernel reports ENOBUFS, e.g. after the process was stopped) the
 * mirror resyncs and the stream carries the net changes it found as ordinary add/update/del
 * lines, followed by one `resync` line (`neighbours`: the mirror's count after it; `changes`: the
 * table changes the resync found, all tables). Applying every line to a map keyed by (dev, ip)
 * gives the kernel's table after each `resync` line. A non-fatal mirror error is a warning on
 * stderr; a fatal one (the subscription failed) ends the watch with its code (exit 1).
 */
import { parseArgs } from 'node:util';
import { PinholeError } from '../../sys/index.ts';
import { Mirror, type MirrorEvent } from '../../netlink/mirror.ts';
import { nudStateName, type Family, type NeighEntry } from '../../netlink/rtnl.ts';
import { parseFamily } from '../args.ts';
import { table, toJson, type CommandIO } from '../io.ts';
import { runUntilStopped, type Lifecycle } from '../lifecycle.ts';

export interface NeighRunOptions {
  /** Also ends `--watch` (besides the stop signals and a closed output). */
  signal?: AbortSignal;
}

export async function run(args: string[], io: CommandIO, opts: NeighRunOptions = {}): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      watch: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      family: { type: 'string' },
      dev: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    io.out('usage: pinhole neigh [--watch] [--json] [--family 4|6] [--dev NAME]');
    return 0;
  }
  const family = parseFamily(values.family);
  if (values.dev !== undefined && values.dev.trim() === '') throw new PinholeError('ERR_CLI_USAGE', 'neigh: --dev needs an interface name');
  if (!values.watch) return list(values, family, io, undefined);
  // Stop handlers first, so a signal while the mirror opens ends the watch too.
  const warn = (e: Record<string, unknown>): void => {
    if (e.level === 'warn') io.err(`pinhole: warning: ${String(e.message)}`);
  };
  return runUntilStopped({ log: warn, ...(opts.signal ? { signal: opts.signal } : {}) }, (life) => list(values, family, io, life));
}

interface NeighValues {
  json: boolean;
  dev?: string | undefined;
}

/** The listing; with `life` (--watch) then the changes until a stop is requested. */
async function list(values: NeighValues, family: Family | undefined, io: CommandIO, life: Lifecycle | undefined): Promise<number> {
  const mirror = await Mirror.open();
  try {
    const name = (i: number): string => mirror.tables.links.get(i)?.name ?? String(i);
    let devIndex: number | undefined;
    if (values.dev !== undefined) {
      devIndex = [...mirror.tables.links.values()].find((l) => l.name === values.dev)?.index;
      if (devIndex === undefined) throw new PinholeError('ERR_IFACE_NOT_FOUND', `no network interface "${values.dev}" in this namespace`);
    }
    const keep = (n: NeighEntry): boolean => (!family || n.family === family) && (devIndex === undefined || n.ifindex === devIndex);
    const view = (n: NeighEntry): Record<string, unknown> => ({
      family: n.family,
      ip: n.ip,
      dev: name(n.ifindex),
      ifindex: n.ifindex,
      mac: n.mac ?? null,
      state: nudStateName(n.state),
      router: (n.flags & 0x80) !== 0,
    });
    const rows = mirror.tables.listNeighbours().filter(keep);
    if (!life) {
      if (values.json) io.out(toJson(rows.map(view)));
      else
        io.out(
          rows.length
            ? table(
                ['address', 'dev', 'lladdr', 'state'],
                rows.map((n) => [n.ip, name(n.ifindex), n.mac ?? '-', nudStateName(n.state)]),
              )
            : '(no neighbours)',
        );
      return 0;
    }
    // Watch: the current table, then changes.
    if (values.json) for (const n of rows) io.out(toJson({ event: 'present', ...view(n) }));
    else {
      io.out(
        rows.length
          ? table(
              ['address', 'dev', 'lladdr', 'state'],
              rows.map((n) => [n.ip, name(n.ifindex), n.mac ?? '-', nudStateName(n.state)]),
            )
          : '(no neighbours)',
      );
      io.out('-- watching (Ctrl-C to stop)');
    }
    const off = mirror.onChange((e: MirrorEvent) => {
      if (e.table === 'resync') {
        io.out(
          values.json
            ? toJson({ event: 'resync', reason: e.reason, neighbours: e.neighbours, changes: e.changes })
            : `-- resync (${e.reason}): ${e.neighbours} neighbours, ${e.changes} table changes`,
        );
        return;
      }
      if (e.table !== 'neigh' || !keep(e.entry)) return;
      const n = e.entry;
      if (values.json) io.out(toJson({ event: e.op, ...view(n) }));
      else io.out(`${e.op.padEnd(6)} ${n.ip} dev ${name(n.ifindex)}${n.mac ? ` lladdr ${n.mac}` : ''} ${nudStateName(n.state)}`);
    });
    let offError = (): void => undefined;
    const failed = new Promise<never>((_resolve, reject) => {
      offError = mirror.onError((err, fatal) => {
        if (fatal) reject(err);
        else {
          const code = (err as { code?: string }).code;
          io.err(`pinhole: warning: ${code ? `${code}: ` : ''}${err.message}`);
        }
      });
    });
    try {
      await Promise.race([life.stopRequested, failed]);
    } finally {
      off();
      offError();
    }
    return 0;
  } finally {
    await mirror.close();
  }
}
