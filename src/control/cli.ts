/**
 * The pinhole command line. The only layer that reads argv and the environment; every command
 * is a module in commands/ exporting `run(args, io) → exit code`. Errors with a stable code are
 * printed as `pinhole: ERR_CODE: message`; anything else is a bug and prints its stack.
 *
 * Exit codes: 0 done (also `pinhole --help` and `pinhole <command> --help`, which print to
 * stdout); 1 an error with a stable code; 2 bad command-line input — any `ERR_CLI_*` or
 * `ERR_PARSE_ARGS_*` code, a missing or unknown command — followed by the command's synopsis on
 * stderr; 70 an internal error (a bug).
 */
import '../sys/index.ts';
import type { CommandIO } from './io.ts';
import { processIO } from './io.ts';

type Command = {
  summary: string;
  /** The synopsis `pinhole <command> --help` prints. */
  usage: string;
  load: () => Promise<{ run: (args: string[], io: CommandIO) => Promise<number> }>;
};

const COMMANDS: Record<string, Command> = {
  probe: {
    summary: 'report kernel features, the interface, and the uplink mode pinhole would use',
    usage: 'usage: pinhole probe [--iface NAME] [--json] [--replace-foreign]',
    load: () => import('./commands/probe.ts'),
  },
  bpf: {
    summary: 'bpf dump | bpf test: the pinhole XDP program, disassembled or run on a frame',
    usage: [
      'usage: pinhole bpf dump [--port N]... [--address IP]...',
      '       pinhole bpf test --port N [--port N]... [--address IP]... --frame HEX [--queue N] [--json]',
    ].join('\n'),
    load: () => import('./commands/bpf.ts'),
  },
  uplink: {
    summary: 'open the uplink (AF_XDP, AF_PACKET fallback), count tunnel frames, optionally cross-connect them (--to)',
    usage: [
      'usage: pinhole uplink --iface IF [--mode auto|afxdp|afpacket] [--port N]... [--address IP]... [--to IF2]',
      '                      [--queues N] [--ring-size N] [--cpus LIST] [--replace-foreign] [--stats-interval MS]',
    ].join('\n'),
    load: () => import('./commands/uplink.ts'),
  },
  run: {
    summary: 'run the forwarder: VXLAN connections from a YAML config file (foreground)',
    usage: 'usage: pinhole run --config FILE [--stats-interval MS]',
    load: () => import('./commands/run.ts'),
  },
  neigh: {
    summary: "the kernel's neighbour table as pinhole mirrors it (--watch to follow)",
    usage: 'usage: pinhole neigh [--watch] [--json] [--family 4|6] [--dev NAME]',
    load: () => import('./commands/neigh.ts'),
  },
  routes: {
    summary: 'the main routing table as pinhole mirrors it',
    usage: 'usage: pinhole routes [--json] [--family 4|6]',
    load: () => import('./commands/routes.ts'),
  },
  resolve: {
    summary: 'route, next hop and MAC for an address (asks the kernel to resolve a miss)',
    usage: 'usage: pinhole resolve IP [--json] [--timeout MS]',
    load: () => import('./commands/resolve.ts'),
  },
  status: {
    summary: "a running daemon's state over its API: uplink mode and why, connections, counters, next hops",
    usage: 'usage: pinhole status [--json] [--socket PATH]',
    load: () => import('./commands/status.ts'),
  },
  connect: {
    summary: 'create a VXLAN connection on a running daemon (API); --replace replaces an existing one',
    usage:
      'usage: pinhole connect NAME --local IF [--local-mode auto|afpacket|afxdp] --vxlan-vni N --remote ADDR [--port P] [--ttl T] [--replace] [--socket PATH] [--json]',
    load: () => import('./commands/connect.ts'),
  },
  disconnect: {
    summary: 'remove a connection from a running daemon (API)',
    usage: 'usage: pinhole disconnect NAME [--socket PATH]',
    load: () => import('./commands/disconnect.ts'),
  },
  wg: {
    summary: 'wg genkey | wg pubkey: WireGuard keys in the format of `wg genkey` / `wg pubkey` (stdin to stdout)',
    usage: [
      'usage: pinhole wg genkey          a new private key on stdout',
      '       pinhole wg pubkey < KEY    the public key of the private key on stdin',
    ].join('\n'),
    load: () => import('./commands/wg.ts'),
  },
  lab: {
    summary: 'lab up|down|status: the two-node lab of the demo, from network namespaces (root)',
    usage: [
      "usage: pinhole lab up [--json]       build the lab and write the nodes' config files",
      '       pinhole lab status [--json]   namespaces, interfaces, XDP programs, config files, running pinholes',
      '       pinhole lab down [--json]     remove the lab and whatever a crashed run left',
    ].join('\n'),
    load: () => import('./commands/lab.ts'),
  },
  demo: {
    summary: 'two nodes, a pod on each, pinhole between them: traffic, one table, then all removed (root)',
    usage: 'usage: pinhole demo [--keep]       --keep: leave the lab and both daemons running',
    load: () => import('./commands/demo.ts'),
  },
  bench: {
    summary: 'benchmark suite: pinhole AF_XDP and AF_PACKET vs the kernel, in-kernel XDP and a C forwarder (root)',
    usage: [
      'usage: pinhole bench [--quick] [--runs N] [--only uplink|vxlan]... [--json FILE] [--svg FILE] [--markdown FILE]',
      '       --quick: 2 runs, short sends (2-3 minutes); default: 5 runs (about 10 minutes)',
    ].join('\n'),
    load: () => import('./commands/bench.ts'),
  },
};

export function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'usage: pinhole <command> [options]',
    '',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`),
    '',
    'Run `pinhole <command> --help` or see README.md for options.',
  ].join('\n');
}

/** The synopsis of one command, or undefined for an unknown one. */
export function commandUsage(name: string): string | undefined {
  return Object.hasOwn(COMMANDS, name) ? COMMANDS[name]!.usage : undefined;
}

/** Exit code for an error code: 2 for bad command-line input (README, Errors), 1 otherwise. */
export function exitCodeFor(code: string): number {
  return code.startsWith('ERR_CLI_') || code.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
}

/** Whether `args` ask for help (`--help` or `-h` before any `--`). */
function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

export async function main(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return 0;
  }
  if (!name) {
    io.err(usage());
    return 2;
  }
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    io.err(`pinhole: ERR_CLI_USAGE: unknown command ${name}\n${usage()}`);
    return 2;
  }
  if (wantsHelp(rest)) {
    io.out(cmd.usage);
    return 0;
  }
  try {
    const mod = await cmd.load();
    return await mod.run(rest, io);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('ERR_')) {
      io.err(`pinhole: ${e.code}: ${e.message}`);
      const exit = exitCodeFor(e.code);
      if (exit === 2) io.err(cmd.usage);
      return exit;
    }
    io.err(`pinhole: internal error: ${(err as Error).stack ?? String(err)}`);
    return 70;
  }
}
