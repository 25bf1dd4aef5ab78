/**
 * Differential test through the real kernel: corpus frames are sent across a veth (peer0 → up0)
 * from a raw packet socket; on up0 a *witness* AF_PACKET socket (accept-all filter) records every
 * frame the kernel delivered to packet taps, and the pinhole socket (compiled cBPF filter, run by
 * the kernel) records what it kept. The kept frames must be exactly, and in order, the witnessed
 * frames that the reference classifier calls `tunnel` — evaluated on the frame as it was on the
 * wire, i.e. with the VLAN tag the kernel moved into metadata put back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';
import '../../src/sys/index.ts';
import { SysError } from '../../src/sys/index.ts';
import { corpus } from '../support/pinhole-corpus.ts';
import { classifyAt, policyState } from '../../src/bpf/pinhole/reference.ts';
import { compilePinholeFilter, PINHOLE_SNAP_LEN } from '../../src/bpf/cbpf/pinhole.ts';
import { cbpf } from '../../src/bpf/cbpf/asm.ts';
import { AfPacketSocket, RxBatch } from '../../src/uplink/afpacket/index.ts';
import { buildFrame } from '../../src/packet/build.ts';
import { inNetns, marker, markerOf, RawSocket } from './afpacket-lab.ts';

requireRoot();

const SENTINEL_PORT = 4789;

test('kernel-run cBPF pinhole filter agrees with the reference on corpus frames sent over a veth', async () => {
  const spec = { ports: [SENTINEL_PORT, 51820], addresses: ['198.18.0.1', '2001:db8::1'] };
  const state = policyState(spec);
  const COUNT = 115_000;
  await withNetns(['afd-up', 'afd-peer'], async (up, peer) => {
    addVeth(up, 'up0', peer, 'peer0', { mtu: 9000 });
    // Deep rings: on a loaded machine the reader can fall behind a 500-frame chunk of jumbo
    // frames; a witness drop would hide a sentinel (the failure names the kernel drops).
    const ring = { blockSize: 1 << 20, blockCount: 64 };
    const pin = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter: compilePinholeFilter(spec), ...ring }));
    const wit = inNetns(up, () => AfPacketSocket.open({ ifname: 'up0', filter: cbpf().ret.k(PINHOLE_SNAP_LEN).assemble(), ...ring }));
    const raw = inNetns(peer, () => new RawSocket('peer0'));
    const pb = new RxBatch(256);
    const wb = new RxBatch(256);
    const wire = new Uint8Array(16384);
    let sent = 0;
    let refused = 0;
    let short = 0;
    let witnessed = 0;
    let kept = 0;
    let tagged = 0;
    // Expected kept frames (from the witness) not yet matched against the pinhole socket.
    const pending: Uint8Array[] = [];
    const keptChunk: Uint8Array[] = [];
    let sentinelId = 1 << 30;
    try {
      const drainUntil = async (id: number): Promise<void> => {
        let wDone = false;
        let pDone = false;
        const deadline = Date.now() + 10_000;
        while (!wDone || !pDone) {
          const wn = wit.receive(wb);
          for (let i = 0; i < wn; i++) {
            const off = wb.offset[i]!;
            const len = wb.length[i]!;
            if (markerOf(wit.memory, off, len) === id) wDone = true;
            // The frame as it was on the wire.
            let wl = len;
            if (wb.vlanTci[i]! >= 0) {
              tagged++;
              wire.set(wit.memory.subarray(off, off + 12), 0);
              wire[12] = wb.vlanTpid[i]! >> 8;
              wire[13] = wb.vlanTpid[i]! & 0xff;
              wire[14] = wb.vlanTci[i]! >> 8;
              wire[15] = wb.vlanTci[i]! & 0xff;
              wire.set(wit.memory.subarray(off + 12, off + len), 16);
              wl = len + 4;
            } else {
              wire.set(wit.memory.subarray(off, off + len), 0);
            }
            witnessed++;
            if (classifyAt(wire, 0, wl, state) === 0) pending.push(wit.memory.slice(off, off + len));
          }
          const pn = pin.receive(pb);
          for (let i = 0; i < pn; i++) {
            const got = pin.memory.subarray(pb.offset[i]!, pb.offset[i]! + pb.length[i]!);
            if (markerOf(got) === id) pDone = true;
            keptChunk.push(got.slice());
          }
          if (wn === 0 && pn === 0) {
            if (Date.now() > deadline)
              assert.fail(
                `sentinel ${id} not seen (witness ${wDone}, pinhole ${pDone}); kernel drops: witness ${wit.stats().drops}, pinhole ${pin.stats().drops}`,
              );
            await wit.pollAsync(5);
          }
        }
        // The two sockets' blocks retire independently: compare once both saw the sentinel.
        for (let i = 0; i < Math.max(pending.length, keptChunk.length); i++) {
          const want = pending[i];
          const got = keptChunk[i];
          if (!want || !got || Buffer.compare(Buffer.from(want), Buffer.from(got)) !== 0) {
            assert.fail(
              `kept frame #${kept + i}: not the tunnel frame the witness saw:\n got  ${got ? Buffer.from(got).toString('hex') : '(none)'}\n want ${want ? Buffer.from(want).toString('hex') : '(none)'}`,
            );
          }
        }
        kept += keptChunk.length;
        pending.length = 0;
        keptChunk.length = 0;
      };
      const sentinel = (id: number) =>
        buildFrame({
          eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
          ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
          udp: { sport: 1, dport: SENTINEL_PORT },
          payload: marker(id),
        });
      let inChunk = 0;
      for (const frame of corpus({ ...spec, seed: 99, count: COUNT })) {
        if (frame.length < 14) {
          // SOCK_RAW refuses frames shorter than the link header
          short++;
          continue;
        }
        try {
          raw.send(frame);
          sent++;
        } catch (err) {
          if (!(err instanceof SysError)) throw err;
          refused++; // e.g. EMSGSIZE; the frame never reached the wire
        }
        if (++inChunk === 250) {
          raw.send(sentinel(++sentinelId));
          await drainUntil(sentinelId);
          inChunk = 0;
        }
      }
      raw.send(sentinel(++sentinelId));
      await drainUntil(sentinelId);
      const ps = pin.stats();
      const ws = wit.stats();
      assert.equal(ps.drops, 0);
      assert.equal(ws.drops, 0);
      console.log(
        `sent ${sent} (skipped ${short} shorter than 14 bytes), refused ${refused}, witnessed ${witnessed} (${tagged} with the outer tag in metadata), kept ${kept}`,
      );
      assert.equal(sent + refused + short, COUNT);
      assert.ok(sent >= 100_000, `${sent} sent`);
      assert.ok(witnessed > sent * 0.9, `${witnessed} witnessed`);
      assert.ok(kept > 3000, `${kept} kept`);
      assert.ok(tagged > 1000, `${tagged} tagged`);
    } finally {
      raw.close();
      pin.close();
      wit.close();
    }
  });
});
