/**
 * Feature probes, bpffs handling and the CLI's kernel-facing commands, on this machine (root).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';
import { runCli } from '../helpers/cli.ts';
import '../../src/sys/index.ts';
import { probeFeatures } from '../../src/kernel/features.ts';
import { buildFrame } from '../../src/packet/build.ts';

requireRoot();

test('feature probes succeed for real on this kernel (root)', async () => {
  const f = await probeFeatures();
  for (const k of ['bpf', 'xdpSockets', 'bpfLinkXdp', 'btf'] as const) assert.equal(f[k].status, 'ok', `${k}: ${f[k].detail ?? ''}`);
  assert.equal(f.bpffs.status, 'ok');
});

test('the bpf_link probe leaves no XDP program on the host loopback', () => {
  const out = execFileSync('ip', ['-d', 'link', 'show', 'lo'], { encoding: 'utf8' });
  assert.doesNotMatch(out, /xdp/);
});

test('bpffs: mounted when absent, reused when present, never over another mount', () => {
  const child = fileURLToPath(new URL('./fixtures/bpffs-child.ts', import.meta.url));
  const out = execFileSync('unshare', ['-m', '--propagation', 'private', process.execPath, '--import', 'tsx', child], { encoding: 'utf8' });
  const r = JSON.parse(out) as {
    probe: unknown;
    before: string | null;
    occupied: string;
    first: { mounted: boolean; path: string };
    second: { mounted: boolean };
    found: string;
    dir: string;
  };
  assert.equal(r.before, null);
  assert.deepEqual(r.probe, {
    name: 'bpffs',
    status: 'ok',
    minKernel: '4.4',
    detail: 'not mounted; pinhole mounts it at /sys/fs/bpf when it needs to pin',
  });
  assert.equal(r.occupied, 'ERR_BPFFS_UNAVAILABLE');
  assert.deepEqual(r.first, { path: r.dir, mounted: true });
  assert.equal(r.second.mounted, false);
  assert.equal(r.found, r.dir);
});

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('pinhole bpf test: runs a frame through the kernel and reports action, verdict, reason', () => {
  const vxlan = buildFrame({
    ipv4: { src: '198.18.0.2', dst: '198.18.0.1' },
    udp: { sport: 40000, dport: 4789 },
    payload: new Uint8Array(8),
  });
  const tcp = buildFrame({ ipv6: { src: '2001:db8::2', dst: '2001:db8::1' }, tcp: { sport: 22, dport: 40000 } });
  let r = runCli(['bpf', 'test', '--port', '4789', '--frame', hex(vxlan), '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { action: 'XDP_PASS', verdict: 'xsk', reason: 'tunnel' });
  r = runCli(['bpf', 'test', '--port', '4789', '--frame', hex(tcp), '--json']);
  assert.deepEqual(JSON.parse(r.stdout), { action: 'XDP_PASS', verdict: 'kernel', reason: 'tcp' });
  r = runCli(['bpf', 'test', '--port', '4789', '--address', '198.18.0.9', '--frame', hex(vxlan), '--json']);
  assert.deepEqual(JSON.parse(r.stdout), { action: 'XDP_PASS', verdict: 'kernel', reason: 'address' });
  r = runCli(['bpf', 'test', '--port', '4789', '--frame', hex(vxlan)]);
  assert.match(r.stdout, /XDP_PASS\s+verdict=xsk\s+reason=tunnel/);
});

test('pinhole CLI errors have stable codes and exit statuses', () => {
  let r = runCli(['bpf', 'test', '--port', '4789', '--frame', 'abc']);
  assert.equal(r.code, 2, 'bad command-line input (ERR_CLI_*) exits 2');
  assert.match(r.stderr, /^pinhole: ERR_CLI_FRAME: /);
  r = runCli(['bpf', 'test', '--port', '4789', '--frame', '0011']);
  assert.match(r.stderr, /ERR_CLI_FRAME: .*at least 14/);
  r = runCli(['bpf', 'test', '--port', '99999', '--frame', '00'.repeat(20)]);
  assert.match(r.stderr, /ERR_CLI_PORT/);
  r = runCli(['probe', '--iface', 'ph-no-such-if0']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /ERR_IFACE_NOT_FOUND/);
  r = runCli(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /ERR_CLI_USAGE/);
  r = runCli(['bpf', 'dump', '--bogus']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /ERR_PARSE_ARGS_UNKNOWN_OPTION/);
});

test('pinhole bpf test without privileges names the missing capability', () => {
  const vxlan = buildFrame({ ipv4: { src: '198.18.0.2', dst: '198.18.0.1' }, udp: { sport: 1, dport: 4789 } });
  // Drop every capability for the child (setpriv from util-linux).
  const r = (() => {
    try {
      return {
        out: execFileSync(
          'setpriv',
          [
            '--inh-caps=-all',
            '--bounding-set=-all',
            '--',
            process.execPath,
            fileURLToPath(new URL('../../bin/pinhole.js', import.meta.url)),
            'bpf',
            'test',
            '--port',
            '4789',
            '--frame',
            hex(vxlan),
          ],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
        ),
        code: 0,
        err: '',
      };
    } catch (e) {
      const x = e as { status: number; stderr: string };
      return { out: '', code: x.status, err: x.stderr };
    }
  })();
  assert.equal(r.code, 1);
  assert.match(r.err, /ERR_PERMISSION: loading a BPF program needs CAP_BPF, CAP_NET_ADMIN/);
});

test('pinhole bpf dump prints the program', () => {
  const r = runCli(['bpf', 'dump', '--port', '4789']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /call 51 \(redirect_map\)/);
  assert.match(r.stdout, /^r_tunnel:/m);
});
