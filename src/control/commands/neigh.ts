/**
 * `pinhole neigh [--watch] [--json] [--family 4|6] [--dev NAME]`: the kernel's IPv4/IPv6
 * neighbour table as pinhole's rtnetlink mirror sees it. `--watch` keeps the mirror open and
 * prints every change (one JSON object per line with --json) until SIGINT.
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
import { table, toJson, type CommandIO } from '../io.ts';

export interface NeighRunOptions {
  /** Ends `--watch` (default: SIGINT). */
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
    if (!values.watch) {
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
        else io.err(`pinhole: warning: ${(err as { code?: string }).code ?? 'ERR_NETLINK'}: ${err.message}`);
      });
    });
    try {
      await Promise.race([waitForStop(opts.signal), failed]);
    } finally {
      off();
      offError();
    }
    return 0;
  } finally {
    await mirror.close();
  }
}

function waitForStop(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal) {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
      return;
    }
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

export function parseFamily(v: string | undefined): Family | undefined {
  if (v === undefined) return undefined;
  if (v === '4' || v === 'inet' || v === 'ipv4') return 4;
  if (v === '6' || v === 'inet6' || v === 'ipv6') return 6;
  throw new PinholeError('ERR_CLI_USAGE', `--family must be 4 or 6, not ${v}`);
}
