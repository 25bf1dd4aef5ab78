/**
 * Lab topologies and traffic monitors for host-safety tests and benchmarks.
 *
 *   twoHosts():   [ns a] up0 ──veth── peer0 [ns b]
 *                 198.18.0.1/24, 2001:db8::1/64        198.18.0.2/24, 2001:db8::2/64
 *
 *   threeNodes(): [gen] g0 ──veth── up0 [mid] out0 ──veth── s0 [sink]
 *                 (no addresses; GRO on and IPv6 off everywhere, for a cross-connect)
 *
 * Monitors run real tools inside the namespaces: ping (ICMP/ICMPv6, which also exercises ARP
 * and ND) and an iperf3 TCP stream, and report what they saw when stopped.
 */
import type { ChildProcess } from 'node:child_process';
import { addVeth, createNetns, type Netns } from './netns.ts';

export interface TwoHosts {
  a: Netns;
  b: Netns;
  close(): void;
}

export const LAB = {
  a4: '198.18.0.1',
  b4: '198.18.0.2',
  a6: '2001:db8::1',
  b6: '2001:db8::2',
  aMac: '02:00:00:00:00:01',
  bMac: '02:00:00:00:00:02',
};

/**
 * Two hosts joined by a veth (up0 ── peer0). `gro: true` turns GRO on at both ends: XDP frames sent
 * into a veth are dropped unless its peer runs XDP or GRO (design.md §4). Everything is set up
 * inside one try: a failing step (e.g. ethtool missing) removes both namespaces before throwing.
 */
export function twoHosts(tag: string, opts: { queues?: number; mtu?: number; gro?: boolean } = {}): TwoHosts {
  const a = createNetns(`${tag}-a`);
  let b: Netns | undefined;
  try {
    b = createNetns(`${tag}-b`);
    addVeth(a, 'up0', b, 'peer0', opts);
    a.ip('link', 'set', 'dev', 'up0', 'address', LAB.aMac);
    b.ip('link', 'set', 'dev', 'peer0', 'address', LAB.bMac);
    a.ip('addr', 'add', `${LAB.a4}/24`, 'dev', 'up0');
    b.ip('addr', 'add', `${LAB.b4}/24`, 'dev', 'peer0');
    a.ip('-6', 'addr', 'add', `${LAB.a6}/64`, 'dev', 'up0', 'nodad');
    b.ip('-6', 'addr', 'add', `${LAB.b6}/64`, 'dev', 'peer0', 'nodad');
    if (opts.gro) {
      a.exec('ethtool', ['-K', 'up0', 'gro', 'on']);
      b.exec('ethtool', ['-K', 'peer0', 'gro', 'on']);
    }
    const bb = b;
    return {
      a,
      b: bb,
      close: () => {
        a.close();
        bb.close();
      },
    };
  } catch (err) {
    a.close();
    b?.close();
    throw err;
  }
}

export interface ThreeNodes {
  gen: Netns;
  mid: Netns;
  sink: Netns;
  close(): void;
}

/**
 * A traffic source, a middle node with two uplinks and a sink. GRO is on for every veth (XDP
 * frames sent into a veth are dropped unless its peer runs XDP or GRO) and IPv6 off, so the
 * only traffic is what the test sends.
 */
export function threeNodes(tag: string, opts: { queues?: number } = {}): ThreeNodes {
  const made: Netns[] = [];
  const close = (): void => {
    for (const n of made) n.close();
  };
  try {
    const gen = createNetns(`${tag}-g`);
    made.push(gen);
    const mid = createNetns(`${tag}-m`);
    made.push(mid);
    const sink = createNetns(`${tag}-s`);
    made.push(sink);
    addVeth(gen, 'g0', mid, 'up0', opts);
    addVeth(mid, 'out0', sink, 's0', opts);
    for (const [ns, dev] of [
      [gen, 'g0'],
      [mid, 'up0'],
      [mid, 'out0'],
      [sink, 's0'],
    ] as const) {
      ns.exec('ethtool', ['-K', dev, 'gro', 'on']);
      ns.exec('sysctl', ['-qw', `net.ipv6.conf.${dev}.disable_ipv6=1`]);
    }
    return { gen, mid, sink, close };
  } catch (err) {
    close();
    throw err;
  }
}

function collect(child: ChildProcess): { out: () => string; done: Promise<number> } {
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  // 'close', not 'exit': ping's summary, written as it exits, may still be in the pipe at 'exit'.
  const done = new Promise<number>((resolve) => child.once('close', (code, sig) => resolve(code ?? (sig ? 128 : -1))));
  return { out: () => text, done };
}

export interface PingResult {
  sent: number;
  received: number;
  lossPct: number;
  raw: string;
}

/** Pings `dst` from `ns` every `intervalMs` until stopped (SIGINT makes ping print its summary). */
export function startPing(ns: Netns, dst: string, intervalMs = 20): { stop: () => Promise<PingResult>; kill: () => void } {
  const child = ns.spawn('ping', ['-n', '-i', String(intervalMs / 1000), '-W', '1', dst]);
  const c = collect(child);
  return {
    kill: () => void child.kill('SIGKILL'),
    async stop() {
      child.kill('SIGINT');
      await c.done;
      const raw = c.out();
      const m = /(\d+) packets transmitted, (\d+) received/.exec(raw);
      if (!m) throw new Error(`ping ${dst}: no summary in output:\n${raw}`);
      const sent = Number(m[1]);
      const received = Number(m[2]);
      return { sent, received, lossPct: sent ? ((sent - received) * 100) / sent : 100, raw };
    },
  };
}

export interface TcpResult {
  bytes: number;
  retransmits: number;
  minIntervalBps: number;
  intervals: number;
  raw: string;
}

/**
 * A TCP stream from `client` to an iperf3 server in `server` at `addr`, for `seconds`, with
 * per-interval throughput: a stall shows up as an interval with ~0 bits per second, a reset as a
 * failed run.
 */
export function startTcpStream(
  server: Netns,
  client: Netns,
  addr: string,
  seconds: number,
): { done: Promise<TcpResult>; running: () => boolean; kill: () => void } {
  const srv = server.spawn('iperf3', ['-s', '-1', '-B', addr, '--forceflush']);
  const srvOut = collect(srv);
  let cli: ChildProcess | undefined;
  let finished = false;
  const done = (async () => {
    // Wait until the server listens (it prints "Server listening").
    const deadline = Date.now() + 5000;
    while (!/listening/i.test(srvOut.out())) {
      if (Date.now() > deadline) throw new Error(`iperf3 server did not start: ${srvOut.out()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    cli = client.spawn('iperf3', ['-c', addr, '-t', String(seconds), '-i', '0.5', '-J', '-b', '200M']);
    const c = collect(cli);
    const code = await c.done;
    finished = true;
    await srvOut.done;
    const raw = c.out();
    if (code !== 0) throw new Error(`iperf3 client failed (${code}): ${raw.slice(-2000)}`);
    const j = JSON.parse(raw) as {
      end: { sum_sent: { bytes: number; retransmits: number } };
      intervals: { sum: { bits_per_second: number } }[];
    };
    const bps = j.intervals.map((i) => i.sum.bits_per_second);
    return {
      bytes: j.end.sum_sent.bytes,
      retransmits: j.end.sum_sent.retransmits,
      minIntervalBps: Math.min(...bps),
      intervals: bps.length,
      raw,
    };
  })();
  done.catch(() => undefined);
  return {
    done,
    running: () => !finished,
    kill: () => {
      cli?.kill('SIGKILL');
      srv.kill('SIGKILL');
    },
  };
}
