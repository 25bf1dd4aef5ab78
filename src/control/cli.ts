/**
 * The pinhole command line. The only layer that reads argv and the environment; every command
 * is a module in commands/ exporting `run(args, io) → exit code`. Errors with a stable code are
 * printed as `pinhole: ERR_CODE: message`; anything else is a bug and prints its stack.
 */
import '../sys/index.ts';
import type { CommandIO } from './io.ts';
import { processIO } from './io.ts';

type Command = { summary: string; load: () => Promise<{ run: (args: string[], io: CommandIO) => Promise<number> }> };

const COMMANDS: Record<string, Command> = {
  probe: {
    summary: 'report kernel features, the interface, and the uplink mode pinhole would use',
    load: () => import('./commands/probe.ts'),
  },
  bpf: { summary: 'bpf dump | bpf test: the pinhole XDP program, disassembled or run on a frame', load: () => import('./commands/bpf.ts') },
  uplink: {
    summary: 'open the uplink (AF_XDP, AF_PACKET fallback), count tunnel frames, optionally cross-connect them (--to)',
    load: () => import('./commands/uplink.ts'),
  },
  neigh: { summary: "the kernel's neighbour table as pinhole mirrors it (--watch to follow)", load: () => import('./commands/neigh.ts') },
  routes: { summary: 'the main routing table as pinhole mirrors it', load: () => import('./commands/routes.ts') },
  resolve: {
    summary: 'route, next hop and MAC for an address (asks the kernel to resolve a miss)',
    load: () => import('./commands/resolve.ts'),
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

export async function main(argv: string[], io: CommandIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    io.err(`pinhole: ERR_CLI_USAGE: unknown command ${name}\n${usage()}`);
    return 2;
  }
  try {
    const mod = await cmd.load();
    return await mod.run(rest, io);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('ERR_')) {
      io.err(`pinhole: ${e.code}: ${e.message}`);
      return e.code === 'ERR_CLI_USAGE' || e.code.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
    }
    io.err(`pinhole: internal error: ${(err as Error).stack ?? String(err)}`);
    return 70;
  }
}
