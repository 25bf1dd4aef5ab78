/**
 * Two WireGuard devices joined by an in-memory "network" for unit tests: each device's output
 * is queued; `flush()` delivers queued datagrams to the other side (optionally through a
 * filter that can drop, duplicate or alter them) and returns what each consume said.
 */
import { ConsumeResult, Device, type Peer, type WgOutput } from '../../src/tunnel/wireguard/device.ts';
import { Endpoint } from '../../src/tunnel/wireguard/messages.ts';
import { generatePrivateKey } from '../../src/tunnel/wireguard/keys.ts';
import type { DataAead } from '../../src/tunnel/wireguard/crypto.ts';

export interface Datagram {
  bytes: Uint8Array;
  from: Endpoint;
  to: Endpoint;
}

export interface Delivered {
  action: number;
  reason: number;
  peer: Peer | null;
  payload: Uint8Array | undefined;
  datagram: Datagram;
}

export class Side implements WgOutput {
  readonly device: Device;
  readonly outbox: Datagram[] = [];
  readonly addr: Endpoint;
  /** Wall clock for TAI64N: moves with the test's clock. */
  wallMs = 1_700_000_000_000;
  readonly res = new ConsumeResult();

  constructor(name: string, host: string, opts: { aead?: DataAead; loadThreshold?: number } = {}) {
    this.addr = Endpoint.parse(host, 51820);
    this.device = new Device({
      privateKey: generatePrivateKey(),
      output: this,
      aead: opts.aead,
      wallClock: () => this.wallMs,
      random: () => 0.5,
      loadThreshold: opts.loadThreshold,
    });
    void name;
  }

  send(buf: Uint8Array, off: number, len: number, to: Endpoint): void {
    const t = new Endpoint();
    t.copyFrom(to);
    this.outbox.push({ bytes: buf.slice(off, off + len), from: this.addr, to: t });
  }

  /** Consumes one datagram; copies out the delivered payload. */
  receive(d: Datagram, now: number, from: Endpoint = d.from): Delivered {
    const buf = new Uint8Array(new ArrayBuffer(Math.max(d.bytes.length, 128)));
    buf.set(d.bytes);
    const action = this.device.consume(buf, 0, d.bytes.length, from, now, this.res);
    const payload = action === 1 ? buf.slice(this.res.offset, this.res.offset + this.res.length) : undefined;
    return { action, reason: this.res.reason, peer: this.res.peer, payload, datagram: d };
  }

  /** Encrypts an IP packet for `peer`; returns the datagram (or undefined when staged). */
  encrypt(peer: Peer, packet: Uint8Array, now: number): Uint8Array | undefined {
    const buf = new Uint8Array(new ArrayBuffer(packet.length + 64));
    buf.set(packet, 16);
    const n = peer.encrypt(buf, 16, packet.length, now);
    return n < 0 ? undefined : buf.slice(0, n);
  }
}

export class Pair {
  readonly a: Side;
  readonly b: Side;
  readonly ab: Peer;
  readonly ba: Peer;

  constructor(opts: { psk?: Uint8Array; aead?: DataAead; keepaliveA?: number; loadThreshold?: number; maxPacket4A?: number } = {}) {
    this.a = new Side('a', '198.18.0.1', opts);
    this.b = new Side('b', '198.18.0.2', opts);
    this.ab = this.a.device.addPeer({
      publicKey: this.b.device.publicKey,
      presharedKey: opts.psk,
      endpoint: this.b.addr,
      persistentKeepalive: opts.keepaliveA,
      ...(opts.maxPacket4A !== undefined ? { maxPacket4: opts.maxPacket4A } : {}),
    });
    this.ba = this.b.device.addPeer({ publicKey: this.a.device.publicKey, presharedKey: opts.psk });
  }

  /** Sets both sides' wall clocks to follow the test's clock `now` (ms). */
  at(now: number): number {
    this.a.wallMs = 1_700_000_000_000 + now;
    this.b.wallMs = 1_700_000_000_000 + now;
    return now;
  }

  /** Delivers everything queued (both ways, repeatedly) until quiet; returns what happened. */
  flush(now: number, filter?: (d: Datagram, toSide: Side) => Datagram[] | undefined): Delivered[] {
    const log: Delivered[] = [];
    for (let round = 0; round < 20; round++) {
      const moving: [Datagram, Side][] = [];
      for (const d of this.a.outbox.splice(0)) moving.push([d, this.b]);
      for (const d of this.b.outbox.splice(0)) moving.push([d, this.a]);
      if (moving.length === 0) break;
      for (const [d, side] of moving) {
        const list = filter ? (filter(d, side) ?? [d]) : [d];
        for (const x of list) log.push(side.receive(x, now));
      }
    }
    return log;
  }
}

/** A minimal IPv4 packet (ICMP-ish payload) of `len` bytes with a correct total length. */
export function ipv4Packet(len: number, fill = 0xab): Uint8Array {
  const p = new Uint8Array(len).fill(fill);
  p[0] = 0x45;
  p[2] = len >> 8;
  p[3] = len & 0xff;
  p[9] = 1;
  return p;
}
