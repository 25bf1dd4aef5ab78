/**
 * Traffic generator child: run inside the sender's namespace (`ip netns exec NS node --import tsx
 * bench/lib/trafficgen.ts --iface IF --frame HEX --count N [--chunk N]`). Sends the frame `count`
 * times out of IF with live frames (BPF_PROG_TEST_RUN, see src/control/bench/trafficgen.ts).
 * Prints {"sent":N,"seconds":S}.
 */
import { parseArgs } from 'node:util';
import '../../src/sys/index.ts';
import { sendFrames } from '../../src/control/bench/trafficgen.ts';

const { values } = parseArgs({
  options: {
    iface: { type: 'string' },
    frame: { type: 'string' },
    count: { type: 'string', default: '1000000' },
    batch: { type: 'string', default: '64' },
    chunk: { type: 'string', default: String(1 << 20) },
  },
});
const r = sendFrames({
  iface: values.iface!,
  frame: Uint8Array.from(Buffer.from(values.frame!, 'hex')),
  count: Number(values.count),
  batch: Number(values.batch),
  chunk: Number(values.chunk),
});
process.stdout.write(JSON.stringify(r));
