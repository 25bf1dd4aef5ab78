/**
 * WireGuard connections end to end (lab tier): `pinhole run` on node A serves pod A's veth as a
 * WireGuard connection; on node B runs wireguard-go (configured with `wg set`; its tun holds the
 * "remote pod" addresses 198.19.0.2 and 2001:db8:100::2), or pinhole again with pod B.
 *
 *   [pod A] ── wl0 [node A: pinhole run] up0 ══════ up0 [node B: wireguard-go tun] (or pinhole ── [pod B])
 *
 * The workload side is layer 3: pod A resolves every address to wl0's MAC (pinhole answers ARP and
 * neighbour solicitations), and every ping starts with an empty neighbour cache in the pod.
 *
 * Proven here: handshakes initiated by either side, ping over IPv4 and IPv6, iperf3 TCP and UDP
 * in both directions, IPv4 and IPv6 underlays; rekeying (PINHOLE_TEST_CLOCK_RATE makes pinhole's
 * WireGuard clock run 60× faster, so REKEY_AFTER_TIME passes every 2 s against the real peer) and
 * a restarted wireguard-go (new handshake); the peer roaming to a new address; pinhole ↔ pinhole;
 * replayed, forged, truncated and wrong-key datagrams counted as drops; a flood of initiations
 * from spoofed source ports answered with cookie replies while the established session keeps
 * working; a world-readable key file refused with ERR_WG_KEY_FILE_MODE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { requireRoot } from '../helpers/require.ts';
import { killLeftoverPinholes, startPinhole, type PinholeProc } from '../helpers/pinhole-proc.ts';
import { iperf } from '../helpers/vxlan-lab.ts';
import { followLog } from '../helpers/output.ts';
import { buildLab, type Lab, type LabNode, type LabOptions } from '../../src/control/lab/topology.ts';
import { encodeKey, generatePrivateKey, publicKeyOf } from '../../src/tunnel/wireguard/keys.ts';
import { Device, type WgOutput } from '../../src/tunnel/wireguard/device.ts';
import { Endpoint } from '../../src/tunnel/wireguard/messages.ts';

requireRoot();

let counter = 0;
const dir = mkdtempSync(join(tmpdir(), 'ph-wg-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

interface RunLine {
  event: string;
  mode: string;
  connections: Record<string, Record<string, number>>;
  drops: Record<string, number>;
  ports: Record<string, Record<string, number>>;
  wireguard?: Record<string, number>;
  nextHops: { connection: string; state: string; via?: string }[];
}

const WL_MTU = 1420; // the usual WireGuard MTU: fits the IPv6 underlay overhead (80) under 1500

async function withLab(tag: string, o: Omit<LabOptions, 'prefix'>, fn: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = buildLab({ prefix: `ph-${process.pid}-${++counter}-${tag}`, workloadMtu: WL_MTU, ...o });
  try {
    await fn(lab);
  } finally {
    killLeftoverPinholes();
    lab.close();
  }
}

interface Keys {
  priv: string;
  pub: string;
  file: string;
}

function keys(name: string): Keys {
  const k = generatePrivateKey();
  const file = join(dir, `${name}-${++counter}.key`);
  writeFileSync(file, `${encodeKey(k)}\n`, { mode: 0o600 });
  return { priv: encodeKey(k), pub: encodeKey(publicKeyOf(k)), file };
}

const underlayOf = (n: LabNode, fam: 4 | 6): string => (fam === 4 ? n.underlay4 : n.underlay6);
const endpointOf = (addr: string, port: number): string => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);

/** A pinhole config on `node` with one WireGuard connection on its first workload. */
function wgConfig(
  node: LabNode,
  own: Keys,
  peer: { pub: string; endpoint?: string; allowed: string[]; keepalive?: number },
  mode = 'auto',
): string {
  const w = node.workloads[0]!;
  const file = join(dir, `${node.ns}-${++counter}.yaml`);
  const ep = peer.endpoint ? `, endpoint: "${peer.endpoint}"` : '';
  const ka = peer.keepalive ? `, persistentKeepalive: ${peer.keepalive}` : '';
  writeFileSync(
    file,
    [
      `uplink: { interface: ${node.uplink}, mode: ${mode} }`,
      `api: { socket: ${join(dir, `${node.ns}-${counter}.sock`)} }`,
      'connections:',
      `  - name: wg0`,
      `    local: { interface: ${w.iface} }`,
      `    wireguard:`,
      `      privateKeyFile: ${own.file}`,
      `      listenPort: 51820`,
      `      peer: { publicKey: "${peer.pub}"${ep}, allowedIPs: [${peer.allowed.map((a) => `"${a}"`).join(', ')}]${ka} }`,
      '',
    ].join('\n'),
  );
  return file;
}

function startRun(node: LabNode, file: string, env: string[] = []): PinholeProc {
  return startPinhole(node.ns, ['--config', file, '--stats-interval', '200'], 20_000, 'run', env.length ? ['env', ...env] : []);
}

/** wireguard-go in `ns` with a tun holding the remote pod's addresses. */
class WgGo {
  proc: ChildProcess | undefined;
  constructor(
    readonly lab: Lab,
    readonly ns: string,
    readonly ifname: string,
    readonly own: Keys,
  ) {}

  async start(peer: { pub: string; endpoint?: string; allowed: string[] }): Promise<void> {
    this.proc = this.lab.spawn(this.ns, 'wireguard-go', ['-f', this.ifname]);
    const sock = `/var/run/wireguard/${this.ifname}.sock`;
    const deadline = Date.now() + 10_000;
    while (!existsSync(sock)) {
      if (this.proc.exitCode !== null) throw new Error('wireguard-go exited before creating its interface');
      if (Date.now() > deadline) throw new Error(`wireguard-go did not create ${sock}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const args = [
      'set',
      this.ifname,
      'listen-port',
      '51820',
      'private-key',
      this.own.file,
      'peer',
      peer.pub,
      'allowed-ips',
      peer.allowed.join(','),
    ];
    if (peer.endpoint) args.push('endpoint', peer.endpoint);
    this.lab.exec(this.ns, 'wg', args);
    this.lab.exec(this.ns, 'ip', ['addr', 'add', '198.19.0.2/24', 'dev', this.ifname]);
    this.lab.exec(this.ns, 'ip', ['-6', 'addr', 'add', '2001:db8:100::2/64', 'dev', this.ifname, 'nodad']);
    this.lab.exec(this.ns, 'ip', ['link', 'set', this.ifname, 'mtu', String(WL_MTU), 'up']);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    p.kill('SIGTERM');
    await new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)));
  }

  show(what: string): string {
    return this.lab.exec(this.ns, 'wg', ['show', this.ifname, what]);
  }
}

let wgSeq = 0;
const wgName = (): string => `phwg${process.pid % 10000}${++wgSeq}`;

function ping(lab: Lab, ns: string, dst: string, count = 5, interval = '0.1'): { sent: number; received: number } {
  let out: string;
  try {
    out = lab.exec(ns, 'ping', ['-n', '-c', String(count), '-W', '2', '-i', interval, dst]);
  } catch (err) {
    out = String((err as Error).message);
  }
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return { sent: Number(m?.[1] ?? count), received: Number(m?.[2] ?? 0) };
}

/** ping until one reply comes back (the first packets wait for a handshake), then `count` more. */
function pingOk(lab: Lab, ns: string, dst: string, what: string, count = 5): void {
  for (let i = 0; ; i++) {
    if (ping(lab, ns, dst, 1).received === 1) break;
    if (i >= 10) assert.fail(`${what}: no reply from ${dst}`);
  }
  const r = ping(lab, ns, dst, count);
  assert.equal(r.received, r.sent, `${what}: ${r.received}/${r.sent}`);
}

const POD_A4 = '198.19.0.1';
const POD_A6 = '2001:db8:100::1';
const POD_B4 = '198.19.0.2';
const POD_B6 = '2001:db8:100::2';

for (const fam of [4, 6] as const) {
  test(`pinhole ↔ wireguard-go, IPv${fam} underlay: handshakes both ways, ping v4/v6, iperf3 TCP and UDP both directions, restart of the peer`, async () => {
    await withLab(`wg${fam}`, { sides: { a: 'pinhole', b: 'pinhole' }, underlay: fam }, async (lab) => {
      const { a, b } = lab;
      const ka = keys('a');
      const kb = keys('b');
      const go = new WgGo(lab, b.ns, wgName(), kb);
      try {
        await go.start({ pub: ka.pub, endpoint: endpointOf(underlayOf(a, fam), 51820), allowed: [`${POD_A4}/32`, `${POD_A6}/128`] });
        const p = startRun(
          a,
          wgConfig(a, ka, { pub: kb.pub, endpoint: endpointOf(underlayOf(b, fam), 51820), allowed: [`${POD_B4}/32`, `${POD_B6}/128`] }),
        );
        const ready = (await p.ready) as unknown as RunLine & { wireguard: { publicKey: string; peer: { publicKey: string } }[] };
        assert.equal(ready.wireguard[0]!.publicKey, ka.pub, 'our public key in the ready line');
        assert.doesNotMatch(JSON.stringify(ready), new RegExp(ka.priv.replace(/[+/]/g, '\\$&')), 'no private key in the ready line');
        const pod = a.workloads[0]!.podNs;
        // 1. pinhole initiates (the pod sends first).
        pingOk(lab, pod, POD_B4, 'pod A → wireguard-go, IPv4');
        pingOk(lab, pod, POD_B6, 'pod A → wireguard-go, IPv6');
        const s1 = (await p.statsUntil((s) => ((s as unknown as RunLine).wireguard?.handshakes ?? 0) >= 1)) as unknown as RunLine;
        assert.ok(s1.wireguard!.initiations_sent! >= 1, 'pinhole sent the initiation');
        assert.match(go.show('latest-handshakes'), /\t[1-9]\d*$/m);
        // 2. TCP and UDP, both directions.
        for (const reverse of [false, true]) {
          const tcp = await iperf(pod, b.ns, POD_B4, { reverse });
          console.log(`# TCP ${reverse ? 'B→A' : 'A→B'} ${(tcp.bps / 1e9).toFixed(2)} Gbit/s`);
          assert.ok(tcp.bps > 5e6, `TCP ${reverse ? 'B → A' : 'A → B'}: ${tcp.bps} bit/s`);
          const udp = await iperf(pod, b.ns, POD_B4, { udp: true, reverse, bitrate: '100M' });
          assert.ok(udp.bps > 5e6, `UDP ${reverse ? 'B → A' : 'A → B'}: ${udp.bps} bit/s`);
        }
        // 3. wireguard-go restarts (no session): it initiates when node B sends first.
        await go.stop();
        await go.start({ pub: ka.pub, endpoint: endpointOf(underlayOf(a, fam), 51820), allowed: [`${POD_A4}/32`, `${POD_A6}/128`] });
        const before = (p.latestStats() as unknown as RunLine).wireguard!;
        pingOk(lab, b.ns, POD_A4, 'wireguard-go → pod A after its restart');
        pingOk(lab, b.ns, POD_A6, 'wireguard-go → pod A, IPv6');
        const s3 = (await p.statsUntil(
          (s) => ((s as unknown as RunLine).wireguard?.responses_sent ?? 0) > before.responses_sent!,
        )) as unknown as RunLine;
        assert.ok(s3.wireguard!.handshakes! > before.handshakes!, 'a new handshake, answered by pinhole');
        const fin = (await p.stop()) as unknown as RunLine;
        const conn = fin.connections.wg0!;
        assert.ok(conn.encap_frames! > 1000 && conn.decap_frames! > 1000, JSON.stringify(conn));
        assert.ok(fin.wireguard!.arp_replies! >= 1 && fin.wireguard!.nd_replies! >= 1, JSON.stringify(fin.wireguard));
        const bad = Object.entries(fin.drops).filter(([k]) => !/multicast|pod-mac-unknown/.test(k));
        assert.deepEqual(bad, [], `no drops: ${JSON.stringify(fin.drops)}`);
      } finally {
        await go.stop();
      }
    });
  });
}

test('rekeying: with a 60× WireGuard clock pinhole rekeys every 2 s against wireguard-go while a ping runs without loss', async () => {
  await withLab('wgrk', { sides: { a: 'pinhole', b: 'pinhole' } }, async (lab) => {
    const { a, b } = lab;
    const ka = keys('a');
    const kb = keys('b');
    const go = new WgGo(lab, b.ns, wgName(), kb);
    try {
      await go.start({ pub: ka.pub, allowed: [`${POD_A4}/32`, `${POD_A6}/128`] });
      const p = startRun(a, wgConfig(a, ka, { pub: kb.pub, endpoint: endpointOf(b.underlay4, 51820), allowed: [`${POD_B4}/32`] }), [
        'PINHOLE_TEST_CLOCK_RATE=60',
      ]);
      await p.ready;
      const pod = a.workloads[0]!.podNs;
      pingOk(lab, pod, POD_B4, 'first contact');
      const r = ping(lab, pod, POD_B4, 40, '0.2'); // 8 s: four REKEY_AFTER_TIMEs on pinhole's clock
      const s = (await p.statsUntil((x) => ((x as unknown as RunLine).wireguard?.delivered ?? 0) >= r.received)) as unknown as RunLine;
      assert.ok(s.wireguard!.handshakes! >= 3, `handshakes: ${JSON.stringify(s.wireguard)}`);
      assert.ok(r.received >= r.sent - 1, `ping across rekeys: ${r.received}/${r.sent}`);
      assert.equal(s.drops['wireguard:session-expired'] ?? 0, 0, JSON.stringify(s.drops));
      await p.stop();
    } finally {
      await go.stop();
    }
  });
});

/**
 * A lab with pinhole on node a and wireguard-go on node b, started with node a's key, node a's
 * IPv4 address as its endpoint and pod A's IPv4 address allowed; stopped after `fn`.
 */
async function withGoPeer(
  tag: string,
  fn: (s: { lab: Lab; a: LabNode; b: LabNode; ka: Keys; kb: Keys; go: WgGo }) => Promise<void>,
): Promise<void> {
  await withLab(tag, { sides: { a: 'pinhole', b: 'pinhole' } }, async (lab) => {
    const { a, b } = lab;
    const ka = keys('a');
    const kb = keys('b');
    const go = new WgGo(lab, b.ns, wgName(), kb);
    try {
      await go.start({ pub: ka.pub, endpoint: endpointOf(a.underlay4, 51820), allowed: [`${POD_A4}/32`] });
      await fn({ lab, a, b, ka, kb, go });
    } finally {
      await go.stop();
    }
  });
}

test('roaming: wireguard-go moves to a new address; pinhole follows the authenticated source and republishes its next hop', async () => {
  await withGoPeer('wgroam', async ({ lab, a, b, ka, kb, go }) => {
    const p = startRun(a, wgConfig(a, ka, { pub: kb.pub, endpoint: endpointOf(b.underlay4, 51820), allowed: [`${POD_B4}/32`] }));
    await p.ready;
    const pod = a.workloads[0]!.podNs;
    pingOk(lab, pod, POD_B4, 'before roaming');
    const moved = '198.18.0.12';
    // The new address is a secondary: promote it when the primary goes, rather than losing both.
    lab.exec(b.ns, 'sysctl', ['-qw', `net.ipv4.conf.${b.uplink}.promote_secondaries=1`]);
    lab.exec(b.ns, 'ip', ['addr', 'add', `${moved}/24`, 'dev', b.uplink]);
    lab.exec(b.ns, 'ip', ['addr', 'del', `${b.underlay4}/24`, 'dev', b.uplink]);
    // wireguard-go sends from its new address; pinhole learns it from the authenticated packets.
    pingOk(lab, b.ns, POD_A4, 'from the new address');
    const s = (await p.statsUntil((x) => (x as unknown as RunLine).nextHops.some((h) => h.via === moved))) as unknown as RunLine;
    assert.ok(s.wireguard!.endpoint_changes! >= 1, JSON.stringify(s.wireguard));
    pingOk(lab, pod, POD_B4, 'pod A → roamed peer');
    assert.match(go.show('endpoints'), new RegExp(`${a.underlay4}:51820`));
    await p.stop();
  });
});

test("a WireGuard pod veth's MTU changed: its port opens again and the endpoint learned from the peer stays", async () => {
  await withGoPeer('wgmtu', async ({ lab, a, b, ka, kb }) => {
    // No endpoint on pinhole's side: it learns wireguard-go's from its authenticated packets.
    const p = startRun(a, wgConfig(a, ka, { pub: kb.pub, allowed: [`${POD_B4}/32`] }));
    const log = followLog(p.child);
    await p.ready;
    const w = a.workloads[0]!;
    pingOk(lab, b.ns, POD_A4, 'wireguard-go → pod A (pinhole learns the endpoint)');
    pingOk(lab, w.podNs, POD_B4, 'pod A → wireguard-go');
    lab.exec(w.podNs, 'ip', ['link', 'set', 'dev', w.podIface, 'mtu', String(WL_MTU - 20)]);
    lab.exec(a.ns, 'ip', ['link', 'set', 'dev', w.iface, 'mtu', String(WL_MTU - 20)]);
    await log.until(new RegExp(`"event":"workload-mtu".*"from":${WL_MTU},"to":${WL_MTU - 20}`));
    await log.until(/"event":"connections-changed".*"changed":\["wg0"\]/);
    // pinhole sends first: it can only if it still knows where wireguard-go is.
    pingOk(lab, w.podNs, POD_B4, 'pod A → wireguard-go after the MTU change (the learned endpoint)');
    await p.stop();
    assert.doesNotMatch(log.text(), /"event":"(recovering|connection-change-failed)"/);
  });
});

test('pinhole ↔ pinhole: node B learns node A as endpoint, ping both ways and families, TCP', async () => {
  await withLab('wgpp', { sides: { a: 'pinhole', b: 'pinhole' } }, async (lab) => {
    const { a, b } = lab;
    const ka = keys('a');
    const kb = keys('b');
    const pa = startRun(
      a,
      wgConfig(a, ka, { pub: kb.pub, endpoint: endpointOf(b.underlay4, 51820), allowed: [`${POD_B4}/32`, `${POD_B6}/128`] }),
    );
    const pb = startRun(b, wgConfig(b, kb, { pub: ka.pub, allowed: [`${POD_A4}/32`, `${POD_A6}/128`] }));
    await Promise.all([pa.ready, pb.ready]);
    const podA = a.workloads[0]!.podNs;
    const podB = b.workloads[0]!.podNs;
    pingOk(lab, podA, POD_B4, 'A → B IPv4');
    pingOk(lab, podA, POD_B6, 'A → B IPv6');
    pingOk(lab, podB, POD_A4, 'B → A IPv4');
    pingOk(lab, podB, POD_A6, 'B → A IPv6');
    const tcp = await iperf(podA, podB, POD_B4);
    assert.ok(tcp.bps > 5e6, `TCP: ${tcp.bps}`);
    // A stops first, so nothing it encrypted is still on its way when B stops and counts.
    const fa = (await pa.stop()) as unknown as RunLine;
    const fb = (await pb.stop()) as unknown as RunLine;
    const sentA = fa!.connections.wg0!.encap_frames!;
    const gotB = fb!.connections.wg0!.decap_frames!;
    // Under TCP load frames may be lost to full rings: every one is counted (A's transmit drops,
    // B's kernel drops and dataplane drops); nothing is invented.
    const sum = (xs: number[]): number => xs.reduce((t, x) => t + x, 0);
    const counted =
      sum(Object.values(fa!.ports).map((c) => c.tx_dropped ?? 0)) +
      sum(Object.values(fb!.ports).map((c) => c.kernel_drops ?? 0)) +
      sum(Object.values(fb!.drops));
    assert.ok(gotB <= sentA && sentA - gotB <= counted, `A encrypted ${sentA}, B delivered ${gotB}, drops counted ${counted}`);
    assert.ok(fb!.wireguard!.endpoint_changes! >= 1, 'B learned its peer endpoint');
  });
});

/** Transport datagrams (UDP payloads) that arrive at `ns` on `iface` for port 51820, captured with tcpdump. */
async function captureTransport(lab: Lab, ns: string, iface: string, from: string, trigger: () => void): Promise<Buffer[]> {
  const file = join(dir, `cap-${++counter}.pcap`);
  const td = lab.spawn(ns, 'tcpdump', [
    '-i',
    iface,
    '-n',
    '-U',
    '-c',
    '4',
    '-w',
    file,
    `udp dst port 51820 and src host ${from} and greater 100`,
  ]);
  let err = '';
  td.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // tcpdump says "listening on" once its socket is open.
  for (let i = 0; !err.includes('listening'); i++) {
    if (i > 100) throw new Error(`tcpdump did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  trigger();
  await new Promise((r) => (td.exitCode !== null ? r(null) : td.once('exit', r)));
  const pcap = readFileSync(file);
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= pcap.length;) {
    const caplen = pcap.readUInt32LE(o + 8);
    const frame = pcap.subarray(o + 16, o + 16 + caplen);
    const ihl = (frame[14]! & 15) * 4;
    out.push(Buffer.from(frame.subarray(14 + ihl + 8)));
    o += 16 + caplen;
  }
  return out;
}

/** Sends `datagrams` from `ns` to host:51820 (each from its own source port when `spread`). */
function sendFrom(lab: Lab, ns: string, host: string, datagrams: Buffer[]): void {
  const hex = JSON.stringify(datagrams.map((d) => d.toString('hex')));
  const script = `
    const dgram = require('node:dgram');
    const list = ${hex};
    let n = 0;
    const next = () => {
      if (n === list.length) return;
      const s = dgram.createSocket('udp4');
      s.send(Buffer.from(list[n++], 'hex'), 51820, '${host}', () => { s.close(); next(); });
    };
    next();`;
  lab.exec(ns, process.execPath, ['-e', script]);
}

/** Initiations from a fresh identity to `responder` (base64); with `macKey`, mac1 is computed for that key instead. */
function initiations(responder: string, n: number): Buffer[] {
  const out: Buffer[] = [];
  const output: WgOutput = { send: (buf, off, len) => void out.push(Buffer.from(buf.subarray(off, off + len))) };
  const d = new Device({ privateKey: generatePrivateKey(), output });
  const peer = d.addPeer({ publicKey: Buffer.from(responder, 'base64'), endpoint: Endpoint.parseHostPort('198.18.0.1:51820') });
  for (let i = 0; i < n; i++) peer.handshakeInitiation(i * 10_000, true);
  return out;
}

test('attacks: replayed, forged, truncated, wrong-key and unknown-peer datagrams are counted drops; an initiation flood gets cookie replies while the session keeps working', async () => {
  await withGoPeer('wgatk', async ({ lab, a, b, ka, kb }) => {
    const p = startRun(a, wgConfig(a, ka, { pub: kb.pub, endpoint: endpointOf(b.underlay4, 51820), allowed: [`${POD_B4}/32`] }));
    await p.ready;
    const pod = a.workloads[0]!.podNs;
    pingOk(lab, pod, POD_B4, 'session up');
    const captured = await captureTransport(lab, a.ns, a.uplink, b.underlay4, () => ping(lab, b.ns, POD_A4, 4));
    const transport = captured.filter((d) => d[0] === 4);
    assert.ok(transport.length >= 1, `captured ${captured.length} datagrams`);
    const t = transport[0]!;
    const forged = Buffer.from(t);
    forged.writeUInt32LE(forged.readUInt32LE(8) + 100_000, 8); // a fresh counter: not a replay
    forged[forged.length - 20]! ^= 1;
    const wrongKey = initiations(encodeKey(publicKeyOf(generatePrivateKey())), 1);
    const unknownPeer = initiations(ka.pub, 1);
    sendFrom(lab, b.ns, a.underlay4, [t, t, forged, t.subarray(0, 20), ...wrongKey, ...unknownPeer]);
    const s = (await p.statsUntil((x) => {
      const d = (x as unknown as RunLine).drops;
      return (d['wireguard:replayed'] ?? 0) >= 2 && (d['wireguard:decrypt-failed'] ?? 0) >= 1 && (d['wireguard:unknown-peer'] ?? 0) >= 1;
    })) as unknown as RunLine;
    assert.ok((s.drops['wireguard:truncated'] ?? 0) >= 1, JSON.stringify(s.drops));
    assert.ok((s.drops['wireguard:bad-mac1'] ?? 0) >= 1, JSON.stringify(s.drops));
    // The forged packet did not move the replay window: the session still works.
    pingOk(lab, pod, POD_B4, 'after the attacks');

    // A flood of initiations (valid mac1, unknown identity) from many source ports.
    const flood = lab.spawn(pod, 'ping', ['-n', '-i', '0.05', '-c', '60', '-W', '2', POD_B4]);
    let pingOut = '';
    flood.stdout!.on('data', (d: Buffer) => (pingOut += d.toString()));
    sendFrom(lab, b.ns, a.underlay4, initiations(ka.pub, 400));
    await new Promise((r) => (flood.exitCode !== null ? r(null) : flood.once('exit', r)));
    const f = (await p.statsUntil((x) => ((x as unknown as RunLine).wireguard?.cookie_replies_sent ?? 0) > 0)) as unknown as RunLine;
    assert.ok((f.drops['wireguard:under-load-no-cookie'] ?? 0) > 0, JSON.stringify(f.drops));
    const m = /(\d+) packets transmitted, (\d+) received/.exec(pingOut);
    assert.ok(
      m && Number(m[2]) >= Number(m[1]) - 1,
      `the session kept working during the flood: ${pingOut.split('\n').slice(-3).join(' ')}`,
    );
    await p.stop();
  });
});

test('a key file readable by group or others is refused with ERR_WG_KEY_FILE_MODE, before anything is set up', async () => {
  await withLab('wgkey', { sides: { a: 'pinhole', b: 'pinhole' } }, async (lab) => {
    const { a, b } = lab;
    const ka = keys('a');
    writeFileSync(ka.file, `${ka.priv}\n`, { mode: 0o644 });
    const { chmodSync } = await import('node:fs');
    chmodSync(ka.file, 0o644);
    const p = startRun(a, wgConfig(a, ka, { pub: keys('b').pub, endpoint: endpointOf(b.underlay4, 51820), allowed: [`${POD_B4}/32`] }));
    const r = await p.exited;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ERR_WG_KEY_FILE_MODE/);
    assert.match(r.stderr, /not accessible to group or others/);
    assert.ok(!r.stderr.includes(ka.priv) && !r.stdout.includes(ka.priv), 'the key is never printed');
    const link = lab.exec(a.ns, 'ip', ['-d', 'link', 'show', a.uplink]);
    assert.doesNotMatch(link, /prog\/xdp/, 'nothing left attached');
  });
});
