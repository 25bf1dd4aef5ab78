/**
 * WireGuard interop with wireguard-go (Debian packages wireguard-go and wireguard-tools), outside
 * the dataplane: pinhole's protocol core (src/tunnel/wireguard) runs in a small Node program
 * over a UDP socket (fixtures/wireguard-peer.ts) in one namespace, wireguard-go with a tun in
 * the other, configured with `wg set`.
 *
 *   ns "go"  wireguard-go tun 198.19.0.1/24 ── veth 198.18.0.1 ═══ 198.18.0.2 veth ── ns "ph"  node: Device over dgram
 *
 * Proven: a handshake initiated by wireguard-go (a ping from its side; our program answers the
 * echo), one initiated by us (our echo request, built by hand, is answered by the kernel behind
 * wireguard-go's tun), a rekey after injected time (our clock jumps 121 s: the next packet
 * starts a handshake, wireguard-go answers on the new session), replayed and forged transport
 * packets counted as drops, and `pinhole wg pubkey` agreeing with `wg pubkey`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { PINHOLE_BIN } from '../helpers/cli.ts';

const PEER = fileURLToPath(new URL('./fixtures/wireguard-peer.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));

type Event = Record<string, unknown> & { ev: string };

/** The Node peer: JSON commands in, JSON events out; `expect` waits for a matching event. */
class NodePeer {
  private readonly events: Event[] = [];
  private waiters: { pred: (e: Event) => boolean; resolve: (e: Event) => void }[] = [];
  stderr = '';

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (l) => {
      const e = JSON.parse(l) as Event;
      const w = this.waiters.find((x) => x.pred(e));
      if (w) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(e);
      } else this.events.push(e);
    });
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  send(cmd: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  expect(pred: (e: Event) => boolean, what: string, timeoutMs = 10_000): Promise<Event> {
    const i = this.events.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; stderr: ${this.stderr}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  async call(cmd: Record<string, unknown>, ev: string): Promise<Event> {
    this.send(cmd);
    return this.expect((e) => e.ev === ev, ev);
  }
}

/** Waits until wireguard-go's UAPI socket for `ifname` exists (it is created once the tun is up). */
async function waitForSocket(ifname: string, proc: ReturnType<Netns['spawn']>): Promise<void> {
  const path = `/var/run/wireguard/${ifname}.sock`;
  const deadline = Date.now() + 10_000;
  let exited = false;
  proc.once('exit', () => (exited = true));
  while (!existsSync(path)) {
    if (exited) throw new Error('wireguard-go exited before creating its interface');
    if (Date.now() > deadline) throw new Error(`wireguard-go did not create ${path}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function execAsync(ns: Netns, cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => resolve({ code: code ?? -1, out }));
  });
}

function pinholeWg(args: string[], input?: string): string {
  const r = spawnSync(process.execPath, [PINHOLE_BIN, 'wg', ...args], { encoding: 'utf8', input });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test(
  'wireguard-go interop: handshakes both ways, ping, rekey after injected time, replay/forgery drops',
  { timeout: 120_000 },
  async () => {
    requireRoot();
    const ifname = `phwg${process.pid % 100000}`;
    const tmp = mkdtempSync(join(tmpdir(), 'ph-wg-'));
    await withNetns(['wg-go', 'wg-ph'], async (go, ph) => {
      addVeth(go, 'wgu0', ph, 'wgu1');
      go.ip('addr', 'add', '198.18.0.1/24', 'dev', 'wgu0');
      ph.ip('addr', 'add', '198.18.0.2/24', 'dev', 'wgu1');

      // Keys: ours from `pinhole wg genkey`, checked against `wg pubkey`; wireguard-go's from `wg`.
      const ourPriv = pinholeWg(['genkey']);
      const ourPub = pinholeWg(['pubkey'], `${ourPriv}\n`);
      assert.equal(go.exec('wg', ['pubkey'], { input: `${ourPriv}\n` }).trim(), ourPub, 'pinhole wg pubkey = wg pubkey');
      const goPriv = go.exec('wg', ['genkey']).trim();
      const goPub = go.exec('wg', ['pubkey'], { input: `${goPriv}\n` }).trim();
      assert.equal(pinholeWg(['pubkey'], goPriv), goPub, 'wg genkey keys read by pinhole wg pubkey');
      const keyFile = join(tmp, 'go.key');
      writeFileSync(keyFile, `${goPriv}\n`, { mode: 0o600 });

      const wgGo = go.spawn('wireguard-go', ['-f', ifname]);
      let child: ChildProcessWithoutNullStreams | undefined;
      try {
        await waitForSocket(ifname, wgGo);
        go.exec('wg', [
          'set',
          ifname,
          'listen-port',
          '51820',
          'private-key',
          keyFile,
          'peer',
          ourPub,
          'allowed-ips',
          '198.19.0.2/32',
          'endpoint',
          '198.18.0.2:51820',
        ]);
        go.ip('addr', 'add', '198.19.0.1/24', 'dev', ifname);
        go.ip('link', 'set', ifname, 'up');

        child = spawn(
          'ip',
          [
            'netns',
            'exec',
            ph.name,
            process.execPath,
            '--import',
            'tsx',
            PEER,
            '198.18.0.2',
            '51820',
            '198.19.0.2',
            goPub,
            '198.18.0.1:51820',
          ],
          {
            cwd: REPO,
            stdio: ['pipe', 'pipe', 'pipe'],
          },
        );
        const peer = new NodePeer(child);
        child.stdin.write(`${ourPriv}\n`);
        const ready = await peer.expect((e) => e.ev === 'ready', 'ready');
        assert.equal(ready.publicKey, ourPub);

        // 1. wireguard-go initiates: a ping from its side; our program answers the echo request.
        const ping = await execAsync(go, 'ping', ['-c', '1', '-W', '5', '198.19.0.2']);
        assert.equal(ping.code, 0, `ping through wireguard-go to pinhole: ${ping.out}`);
        const hs1 = await peer.expect((e) => e.ev === 'handshake', 'first handshake');
        assert.equal(hs1.initiator, false, 'wireguard-go initiated');
        const req = await peer.expect((e) => e.ev === 'deliver', 'echo request');
        assert.deepEqual([req.icmpType, req.src, req.dst, req.icmpOk], [8, '198.19.0.1', '198.19.0.2', true]);

        // 2. We initiate; our echo request is answered by the kernel behind wireguard-go's tun.
        assert.equal((await peer.call({ cmd: 'initiate' }, 'initiated')).sent, true);
        const hs2 = await peer.expect((e) => e.ev === 'handshake' && e.initiator === true, 'our handshake');
        assert.equal(hs2.completed, 2);
        const s2 = (await peer.call({ cmd: 'stats' }, 'stats')) as Event & { current: { index: number; initiator: boolean } };
        assert.equal(s2.current.initiator, true);
        assert.ok(((await peer.call({ cmd: 'ping', dst: '198.19.0.1', id: 0x4242, seq: 1 }, 'pinged')).len as number) > 0);
        const rep1 = await peer.expect((e) => e.ev === 'deliver' && e.icmpType === 0 && e.seq === 1, 'echo reply 1');
        assert.deepEqual([rep1.id, rep1.src, rep1.icmpOk, rep1.rxIndex], [0x4242, '198.19.0.1', true, s2.current.index]);
        assert.match(
          go.exec('wg', ['show', ifname, 'latest-handshakes']),
          new RegExp(`^${ourPub.replace(/[+/]/g, '\\$&')}\\t[1-9]\\d*`, 'm'),
        );

        // 3. Rekey after injected time: 121 s later the next packet still goes out on the old
        // session and starts a handshake; wireguard-go answers, and replies on the new session.
        await peer.call({ cmd: 'advance', ms: 121_000 }, 'advanced');
        assert.ok(((await peer.call({ cmd: 'ping', dst: '198.19.0.1', id: 0x4242, seq: 2 }, 'pinged')).len as number) > 0);
        const hs3 = await peer.expect((e) => e.ev === 'handshake' && e.completed === 3, 'rekey handshake');
        assert.equal(hs3.initiator, true);
        await peer.expect((e) => e.ev === 'deliver' && e.icmpType === 0 && e.seq === 2, 'echo reply 2');
        const s3 = (await peer.call({ cmd: 'stats' }, 'stats')) as Event & { current: { index: number } };
        assert.notEqual(s3.current.index, s2.current.index, 'a new session');
        await peer.call({ cmd: 'ping', dst: '198.19.0.1', id: 0x4242, seq: 3 }, 'pinged');
        const rep3 = await peer.expect((e) => e.ev === 'deliver' && e.icmpType === 0 && e.seq === 3, 'echo reply 3');
        assert.equal(rep3.rxIndex, s3.current.index, 'wireguard-go replied on the new session');

        // 4. Replayed and forged transport packets are dropped and counted.
        const replay = await peer.call({ cmd: 'replay-last' }, 'consumed');
        assert.deepEqual([replay.action, replay.reason], [3, 'replayed']);
        const forged = await peer.call({ cmd: 'forge-last' }, 'consumed');
        assert.deepEqual([forged.action, forged.reason], [3, 'decrypt_failed']);
        const s4 = (await peer.call({ cmd: 'stats' }, 'stats')) as Event & { drops: Record<string, number> };
        assert.equal(s4.drops.replayed, 1);
        assert.equal(s4.drops.decrypt_failed, 1);
        // The forged packet did not move the window: the next genuine packet still gets through.
        await peer.call({ cmd: 'ping', dst: '198.19.0.1', id: 0x4242, seq: 4 }, 'pinged');
        await peer.expect((e) => e.ev === 'deliver' && e.icmpType === 0 && e.seq === 4, 'echo reply 4');
        const transfer = go.exec('wg', ['show', ifname, 'transfer']);
        assert.match(transfer, /\t[1-9]\d*\t[1-9]\d*$/m, 'wireguard-go counted traffic both ways');
      } finally {
        child?.stdin.end();
        child?.kill('SIGTERM');
        wgGo.kill('SIGTERM');
        await new Promise((r) => (wgGo.exitCode !== null ? r(null) : wgGo.once('exit', r)));
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  },
);
