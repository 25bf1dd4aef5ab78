/**
 * `pinhole bpf dump [--port N]... [--address IP]...` — the assembled pinhole program, disassembled.
 * `pinhole bpf test --port N... [--address IP]... --frame HEX [--queue N] [--json]` — load the
 * program, run one frame through the kernel (BPF_PROG_TEST_RUN) and report action, verdict, reason.
 */
import { parseArgs } from 'node:util';
import { disasm } from '../../bpf/asm/index.ts';
import { REASONS, verdictOf, type Reason } from '../../bpf/pinhole/policy.ts';
import { buildPinhole } from '../../bpf/pinhole/program.ts';
import { XDP_ACTION_NAMES } from '../../kernel/bpf-attr.ts';
import { loadPinhole } from '../../kernel/pinhole.ts';
import { XDP_TEST_MIN_FRAME, XdpTestRunner } from '../../kernel/program.ts';
import { PinholeError } from '../../sys/index.ts';
import { requireCaps } from '../caps.ts';
import { specFromArgs } from '../args.ts';
import { toJson, type CommandIO } from '../io.ts';

const specOptions = {
  port: { type: 'string', multiple: true, default: [] as string[] },
  address: { type: 'string', multiple: true, default: [] as string[] },
} as const;

export function parseHexFrame(text: string): Uint8Array {
  const clean = text.replace(/[\s:.-]/g, '').replace(/^0x/i, '');
  if (clean.length === 0 || clean.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(clean)) {
    throw new PinholeError('ERR_CLI_FRAME', '--frame: expected an even number of hex digits (separators : . - and spaces are allowed)');
  }
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'dump') {
    const { values } = parseArgs({ args: rest, options: specOptions, strict: true });
    io.out(disasm(buildPinhole(specFromArgs(values.port, values.address))));
    return 0;
  }
  if (sub === 'test') {
    const { values } = parseArgs({
      args: rest,
      options: {
        ...specOptions,
        frame: { type: 'string' },
        queue: { type: 'string', default: '0' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    });
    if (!values.frame) throw new PinholeError('ERR_CLI_USAGE', 'bpf test: --frame HEX is required');
    // rx_queue_index is a u32; anything else would become NaN → 0 and test another queue.
    const queue = /^\d+$/.test(values.queue) ? Number(values.queue) : Number.NaN;
    if (!(queue <= 0xffffffff)) throw new PinholeError('ERR_CLI_USAGE', `--queue ${values.queue}: expected a queue index 0..4294967295`);
    const spec = specFromArgs(values.port, values.address);
    const frame = parseHexFrame(values.frame);
    if (frame.length < XDP_TEST_MIN_FRAME) {
      throw new PinholeError(
        'ERR_CLI_FRAME',
        `--frame: ${frame.length} bytes; the kernel's test runner needs at least ${XDP_TEST_MIN_FRAME} (an Ethernet header)`,
      );
    }
    requireCaps('loading a BPF program', ['CAP_BPF', 'CAP_NET_ADMIN']);
    const ph = loadPinhole(spec);
    try {
      const before = ph.counters().byReason;
      const runner = new XdpTestRunner(ph.program, { maxFrame: Math.max(frame.length, 64), rxQueue: queue });
      const action = runner.run(frame);
      const after = ph.counters().byReason;
      const hit = REASONS.filter((r: Reason) => after[r] !== before[r]);
      if (hit.length !== 1) throw new PinholeError('ERR_BPF_COUNTERS', `expected exactly one counter to move, saw ${hit.length}`);
      const reason = hit[0]!;
      const result = { action: XDP_ACTION_NAMES[action] ?? `XDP_${action}`, verdict: verdictOf(reason), reason };
      io.out(values.json ? toJson(result) : `${result.action}  verdict=${result.verdict}  reason=${result.reason}`);
      return 0;
    } finally {
      ph.close();
    }
  }
  throw new PinholeError('ERR_CLI_USAGE', `bpf: unknown subcommand ${sub ?? '(none)'}; expected dump or test`);
}
