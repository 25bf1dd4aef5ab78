/**
 * Traffic generator child: run inside the sender's namespace (`ip netns exec NS node --import tsx
 * bench/lib/trafficgen.ts --iface IF --frame HEX --count N`). Sends the frame `count` times out
 * of IF with live frames (BPF_PROG_TEST_RUN). Prints {"sent":N,"seconds":S}.
 *
 * The kernel recycles live-frame pages, and a receiver that forwards in place (IP forwarding
 * rewrites MACs and TTL) changes them: so the program rewrites the frame's first bytes (the
 * headers, up to 64) from constants on every run, then returns XDP_TX.
 */
import { parseArgs } from 'node:util';
import { getSys } from '../../src/sys/index.ts';
import { alu64, assemble, exit, jmp, ldx, R0, R1, R2, R3, st, type Insn } from '../../src/bpf/asm/index.ts';
import { XDP_TX } from '../../src/kernel/bpf-attr.ts';
import { LiveFrameGenerator, loadProgram } from '../../src/kernel/program.ts';

const { values } = parseArgs({
  options: {
    iface: { type: 'string' },
    frame: { type: 'string' },
    count: { type: 'string', default: '1000000' },
    batch: { type: 'string', default: '64' },
  },
});
const frame = Uint8Array.from(Buffer.from(values.frame!, 'hex'));
const restore = Math.min(64, frame.length) & ~1;
const dv = new DataView(frame.buffer);
const rewrite: Insn[] = [];
for (let o = 0; o + 4 <= restore; o += 4) rewrite.push(st.w(R2, o, dv.getInt32(o, true)));
if (restore % 4) rewrite.push(st.h(R2, restore - 2, dv.getInt16(restore - 2, true)));
const prog = loadProgram({
  name: 'ph_trafficgen',
  type: 'xdp',
  insns: assemble([
    ldx.w(R2, R1, 0),
    ldx.w(R3, R1, 4),
    alu64.mov.reg(R0, R2),
    alu64.add.imm(R0, restore),
    jmp.jgt.reg(R0, R3, 'tx'),
    ...rewrite,
    alu64.mov.imm(R0, XDP_TX).sym('tx'),
    exit(),
  ]),
});
const gen = new LiveFrameGenerator(prog, getSys().ifNameToIndex(values.iface!), frame);
const count = Number(values.count);
const t0 = process.hrtime.bigint();
// The kernel caps one run's work by its own time checks; send in chunks so every frame is accounted.
const CHUNK = 1 << 20;
for (let left = count; left > 0; left -= CHUNK) gen.send(Math.min(CHUNK, left), Number(values.batch));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
prog.close();
process.stdout.write(JSON.stringify({ sent: count, seconds }));
