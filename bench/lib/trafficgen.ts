/**
 * Traffic generator child: run inside the sender's namespace (`ip netns exec NS node --import tsx
 * bench/lib/trafficgen.ts --iface IF --frame HEX --count N`). Loads `return XDP_TX` and sends
 * the frame `count` times out of IF with live frames. Prints {"sent":N,"seconds":S}.
 */
import { parseArgs } from 'node:util';
import { getSys } from '../../src/sys/index.ts';
import { alu64, assemble, exit, R0 } from '../../src/bpf/asm/index.ts';
import { XDP_TX } from '../../src/kernel/bpf-attr.ts';
import { LiveFrameGenerator, loadProgram } from '../../src/kernel/program.ts';

const { values } = parseArgs({ options: { iface: { type: 'string' }, frame: { type: 'string' }, count: { type: 'string', default: '1000000' }, batch: { type: 'string', default: '64' } } });
const prog = loadProgram({ name: 'ph_trafficgen', type: 'xdp', insns: assemble([alu64.mov.imm(R0, XDP_TX), exit()]) });
const gen = new LiveFrameGenerator(prog, getSys().ifNameToIndex(values.iface!), Uint8Array.from(Buffer.from(values.frame!, 'hex')));
const count = Number(values.count);
const t0 = process.hrtime.bigint();
// The kernel caps one run's work by its own time checks; send in chunks so every frame is accounted.
const CHUNK = 1 << 20;
for (let left = count; left > 0; left -= CHUNK) gen.send(Math.min(CHUNK, left), Number(values.batch));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
prog.close();
process.stdout.write(JSON.stringify({ sent: count, seconds }));
