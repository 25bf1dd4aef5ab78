/**
 * An uplink that also sends GSO trains: wraps the uplink's port (AF_XDP or AF_PACKET) and a
 * TrainSocket on the same interface. Ordinary frames go to the wrapped port as before; a train
 * (Link.gso ≠ 0: a VXLAN packet run built by an offload workload port and the encapsulation, see
 * EncapStage and VxlanEncapTemplate.writeTrain) leaves in one sendto as one skb that the kernel
 * or the device cuts into VXLAN packets (uplink/afpacket/train-socket.ts).
 *
 * Order within a flow: when a train follows ordinary frames in the link, those are handed to the
 * wrapped port and flushed first (a copy-mode AF_XDP or AF_PACKET kick transmits them within the
 * call), then the train goes; a super-frame's last segment is a train of one, so it follows its
 * train by the same socket. The two sockets remain two paths (qdisc against AF_XDP or a qdisc
 * bypass, maybe two device queues): a kick that leaves frames queued (device busy), or a
 * zero-copy AF_XDP uplink (its driver transmits later), lets a train overtake frames queued just
 * before it; TCP takes it as reordering.
 *
 * The train's virtio_net_hdr is written into the 10 bytes in front of its outer Ethernet header
 * (the workload port leaves 128 bytes of headroom in front of a train; the outer headers take at
 * most 70 of them). Counters go to the wrapped port's block: tx_frames and tx_bytes count the
 * packets the train becomes, tx_gso_trains the trains, a failed send their packets in tx_dropped
 * (and `errors` for anything but a full buffer).
 */
import { VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, VNET_HDR_LEN, writeVnetHeader } from '../../packet/offload.ts';
import { outerUdpOffset, trainPackets } from '../../packet/vxlan.ts';
import { getSys } from '../../sys/index.ts';
import type { TrainSender } from '../../uplink/afpacket/train-socket.ts';
import { Link } from '../link.ts';
import type { PacketMemory } from '../memory.ts';
import { PC, type Port } from '../port.ts';

const EAGAIN = 11;
const ENOBUFS = 105;

export class TrainPort implements Port {
  readonly name: string;
  readonly driver: Port['driver'];
  readonly detail: string;
  readonly fd: number;
  /** Port.sendsTrains: the graph lets workload ports feeding this uplink build trains. */
  readonly sendsTrains: boolean;
  /** Ordinary frames in front of a train (sized to the input link at first use). */
  private ordinary = new Link('ordinary', 0);
  /** Native address of each packet memory's buffer, by id, and the view it was taken from. */
  private readonly base: number[] = [];
  private readonly baseOf: Uint8Array[] = [];
  private c: Float64Array;
  private b: number;

  /**
   * `sock`: the train socket, or why there is none (then this port only passes through, says why
   * in its detail, and the graph builds no trains for it).
   */
  constructor(
    readonly inner: Port,
    private readonly sock: TrainSender | string,
    private readonly memory: PacketMemory,
    counters: Float64Array,
    base: number,
  ) {
    this.name = inner.name;
    this.driver = inner.driver;
    this.sendsTrains = typeof sock !== 'string';
    this.detail = `${inner.detail}; ${typeof sock === 'string' ? `no GSO trains: ${sock}` : 'GSO trains on an AF_PACKET socket (UDP segmentation offload)'}`;
    this.fd = inner.fd;
    this.c = counters;
    this.b = base;
  }

  rx(out: Link, tag: number): number {
    return this.inner.rx(out, tag);
  }

  release(): void {
    this.inner.release();
  }

  tx(input: Link): number {
    const n = input.n;
    const gso = input.gso;
    let first = -1;
    for (let i = 0; i < n; i++) {
      if (gso[i] !== 0) {
        first = i;
        break;
      }
    }
    // No socket: the graph builds no trains for this port; were one to come anyway, the wrapped
    // port refuses it as too big (counted), it never reaches a socket that is not there.
    if (first < 0 || !this.sendsTrains) return this.inner.tx(input);
    if (this.ordinary.capacity < input.capacity) this.ordinary = new Link(`${this.name}:ordinary`, input.capacity);
    const o = this.ordinary;
    let queued = 0;
    for (let i = 0; i < n; i++) {
      const g = gso[i]!;
      if (g === 0) {
        // Room is the input's capacity: never full.
        o.push(input.mem[i]!, input.addr[i]!, input.len[i]!, input.aux[i]!, input.csum[i]!);
        continue;
      }
      if (o.n > 0) {
        queued += this.inner.tx(o);
        o.clear();
        this.inner.flush();
      }
      queued += this.sendTrain(input.mem[i]!, input.addr[i]!, input.len[i]!, g);
    }
    if (o.n > 0) {
      queued += this.inner.tx(o);
      o.clear();
    }
    return queued;
  }

  /** Sends one train; returns the packets it becomes (0 when it could not be sent). */
  private sendTrain(m: number, addr: number, len: number, chunk: number): number {
    const u8 = this.memory.u8[m]!;
    const c = this.c;
    const b = this.b;
    // Outer headers: Ethernet, IPv4 (20, no options: ours) or IPv6 (40), UDP.
    const l4 = outerUdpOffset(u8, addr);
    const packets = trainPackets(u8, addr, len, chunk);
    const v = addr - VNET_HDR_LEN;
    writeVnetHeader(u8, v, VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, l4 + 8, chunk, l4, 6);
    let at = this.base[m];
    if (this.baseOf[m] !== u8 || at === undefined) {
      // A memory id is reused with another buffer after a release: look the address up again.
      at = Number(getSys().addressOf(u8));
      this.base[m] = at;
      this.baseOf[m] = u8;
    }
    const r = (this.sock as TrainSender).send(at + v, len + VNET_HDR_LEN);
    if (r < 0) {
      c[b + PC.txDropped] += packets;
      if (r !== -EAGAIN && r !== -ENOBUFS) c[b + PC.errors]++;
      return 0;
    }
    c[b + PC.txFrames] += packets;
    c[b + PC.txBytes] += len + (packets - 1) * (l4 + 8);
    c[b + PC.txGsoTrains]++;
    return packets;
  }

  flush(): void {
    this.inner.flush();
  }

  readable(): boolean {
    return this.inner.readable();
  }

  pollError(): void {
    this.inner.pollError();
  }

  refreshStats(): void {
    this.inner.refreshStats();
  }

  setCounters(c: Float64Array, base: number): void {
    this.c = c;
    this.b = base;
    this.inner.setCounters(c, base);
  }

  close(): void {
    try {
      this.inner.close();
    } finally {
      if (typeof this.sock !== 'string') this.sock.close();
    }
  }
}
