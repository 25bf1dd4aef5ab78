/**
 * The operator interface against a real daemon (lab tier): `pinhole status|connect|disconnect`
 * over the API socket change connections at runtime while an untouched connection keeps its
 * ping; errors come back with stable codes and change nothing; SIGHUP after an API change
 * discards it with a warning (the file wins); the Prometheus endpoint, scraped over HTTP inside
 * the node, agrees with what was sent. Also against the real daemon (the unit tier has them
 * against a fake one): a remote of a family the uplink has no address of is a 4xx naming the
 * field, and many concurrent requests all get whole answers and leave exactly the expected state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { apiRequest, type ApiResponse } from '../../src/api/client.ts';
import { encodeKey, generatePrivateKey, publicKeyOf } from '../../src/tunnel/wireguard/keys.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/require.ts';
import { runCli } from '../helpers/cli.ts';
import { killLeftoverPinholes, startPinhole } from '../helpers/pinhole-proc.ts';
import { buildLab, type Lab } from '../../src/control/lab/topology.ts';

requireRoot();

const dir = mkdtempSync(join(tmpdir(), 'ph-api-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function ping(lab: Lab, ns: string, dst: string, count = 5): number {
  try {
    return Number(/(\d+) received/.exec(lab.exec(ns, 'ping', ['-n', '-c', String(count), '-W', '1', '-i', '0.1', dst]))?.[1] ?? 0);
  } catch (err) {
    return Number(/(\d+) received/.exec(String((err as Error).message))?.[1] ?? 0);
  }
}

/** One metric sample's value from Prometheus text, matching all `labels`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

test('API and CLI verbs change connections at runtime; errors change nothing; SIGHUP: the file wins; metrics agree', async () => {
  const lab = buildLab({
    prefix: `ph-${process.pid}-api`,
    sides: { a: 'pinhole', b: 'kernel' },
    connections: [{ vni: 100 }, { vni: 200 }],
    workloadQueues: 2,
  });
  // Killed in finally too: a failing assertion must not leave the test waiting on a ping.
  let steady: ReturnType<Lab['spawn']> | undefined;
  try {
    const { a, b } = lab;
    const socket = join(dir, 'a.sock');
    const file = join(dir, 'a.yaml');
    const [a0, a1] = a.workloads;
    const [b0, b1] = b.workloads;
    writeFileSync(
      file,
      [
        `uplink: { interface: ${a.uplink}, mode: auto }`,
        `api: { socket: ${socket} }`,
        'metrics: { listen: "127.0.0.1:9464" }',
        'connections:',
        `  - { name: c0, local: { interface: ${a0!.iface} }, vxlan: { vni: ${a0!.vni}, remote: "${b.underlay4}" } }`,
      ].join('\n') + '\n',
    );
    const p = startPinhole(a.ns, ['--config', file], 20_000, 'run');
    await p.ready;
    const cli = (...args: string[]) => runCli([...args, '--socket', socket], { netns: a.ns, timeoutMs: 30_000 });

    let r = cli('status', '--json');
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(r.stdout) as { state: string; uplink: { mode: string }; connections: { name: string; source: string }[] };
    assert.equal(st.state, 'running');
    assert.equal(st.uplink.mode, 'afxdp');
    assert.deepEqual(
      st.connections.map((c) => [c.name, c.source]),
      [['c0', 'file']],
    );
    r = cli('status');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /c0/);

    // A steady ping on c0 through every change below.
    steady = lab.spawn(a0!.podNs, 'ping', ['-n', '-i', '0.05', '-W', '1', b0!.podAddr4]);
    let steadyOut = '';
    steady.stdout!.on('data', (d: Buffer) => (steadyOut += d.toString()));
    const running = steady;
    const steadyDone = new Promise<void>((res) => running.once('close', () => res()));

    // Add c1 through the CLI: it carries traffic at once.
    r = cli('connect', 'c1', '--local', a1!.iface, '--vxlan-vni', String(a1!.vni), '--remote', b.underlay4);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4), 5, 'the connection added through the API carries traffic');

    // Errors: stable codes, exit 1, nothing changes.
    r = cli('connect', 'c2', '--local', a1!.iface, '--vxlan-vni', '300', '--remote', b.underlay4);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_API_CONFLICT/);
    r = cli('connect', 'c2', '--local', a1!.iface, '--vxlan-vni', '16777216', '--remote', b.underlay4);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /vni/);
    r = cli('disconnect', 'nope');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_API_NOT_FOUND/);
    // A duplicate name: `connect` never replaces by accident (If-None-Match: *) ...
    r = cli('connect', 'c1', '--local', a1!.iface, '--vxlan-vni', '300', '--remote', b.underlay4);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^pinhole: ERR_API_EXISTS: connection 'c1' exists: nothing changed \(--replace/);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 3), 3, 'c1 untouched by the failed requests');
    // ... but does with --replace (the same settings: nothing to apply, still 'replaced').
    r = cli('connect', 'c1', '--local', a1!.iface, '--vxlan-vni', String(a1!.vni), '--remote', b.underlay4, '--replace');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^replaced connection c1: vni 200/);

    // Metrics over HTTP inside the node: c1's counters agree with the pings sent on it.
    const scrape = (): string =>
      lab.exec(a.ns, process.execPath, [
        '-e',
        "fetch('http://127.0.0.1:9464/metrics').then(r => r.text()).then(t => process.stdout.write(t))",
      ]);
    const before = scrape();
    const tx0 = sample(before, 'pinhole_connection_frames_total', { connection: 'c1', direction: 'tx' }) ?? -1;
    assert.ok(tx0 >= 8, `c1 tx frames so far: ${tx0}`);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 10), 10);
    const after = scrape();
    const tx1 = sample(after, 'pinhole_connection_frames_total', { connection: 'c1', direction: 'tx' })!;
    const rx1 = sample(after, 'pinhole_connection_frames_total', { connection: 'c1', direction: 'rx' })!;
    // 10 echo requests in, 10 replies out (plus at most a neighbour probe or two).
    assert.ok(tx1 - tx0 >= 10 && tx1 - tx0 <= 12, `c1 tx delta ${tx1 - tx0}`);
    assert.ok(rx1 >= 18, `c1 rx ${rx1}`);
    assert.match(after, /pinhole_uplink_info\{[^}]*mode="afxdp"/);
    // Ring gauges: only the rings the ports have (AF_XDP uplink rx/tx descriptor rings, AF_PACKET
    // workload RX slots and TX ring), each with its real size.
    const rings = after.split('\n').filter((l) => l.startsWith('pinhole_ring_size{'));
    assert.deepEqual([...new Set(rings.map((l) => /ring="([^"]*)"/.exec(l)![1]))].sort(), ['rx', 'tx']);
    for (const port of ['uplink', 'wl:c0']) {
      for (const ring of ['rx', 'tx']) {
        assert.ok((sample(after, 'pinhole_ring_size', { queue: '0', port, ring }) ?? 0) > 0, `${port} ${ring} ring size`);
        assert.ok(sample(after, 'pinhole_ring_entries', { queue: '0', port, ring }) !== undefined, `${port} ${ring} ring entries`);
      }
    }
    assert.ok(
      sample(after, 'pinhole_drops_total', { stage: 'decap', reason: 'unknown-vni' }) !== undefined,
      'drop series exist from the start',
    );

    // Remove c1 through the CLI.
    r = cli('disconnect', 'c1');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(ping(lab, a1!.podNs, b1!.podAddr4, 2), 0, 'the removed connection carries nothing');

    // Add it again, then SIGHUP: the file (without c1) wins, with a warning.
    r = cli('connect', 'c1', '--local', a1!.iface, '--vxlan-vni', String(a1!.vni), '--remote', b.underlay4);
    assert.equal(r.code, 0, r.stderr);
    p.child.kill('SIGHUP');
    for (let i = 0; ; i++) {
      const s = JSON.parse(cli('status', '--json').stdout) as { connections: { name: string }[] };
      if (s.connections.length === 1) break;
      if (i > 50) assert.fail('SIGHUP did not reload');
      lab.exec(a.ns, 'sleep', ['0.1']);
    }

    steady.kill('SIGINT');
    await steadyDone;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(steadyOut);
    assert.ok(m && Number(m[1]) > 20, steadyOut);
    assert.ok(Number(m[1]) - Number(m[2]) <= 1, `the untouched connection lost pings: ${m[0]}`);

    await p.stop();
    const ex = await p.exited;
    assert.match(ex.stderr, /"event":"api-changes-discarded".*"c1"/);
    // The socket is gone with the daemon: the CLI says no daemon answers.
    r = cli('status');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_API_NO_DAEMON/);
  } finally {
    steady?.kill('SIGKILL');
    killLeftoverPinholes();
    lab.close();
  }
});

/** A daemon on node a of a fresh lab, with c0 (node a's first pod) from its config file. */
async function daemonLab(tag: string, lab: Lab): Promise<{ socket: string; p: ReturnType<typeof startPinhole> }> {
  const { a, b } = lab;
  const socket = join(dir, `${tag}.sock`);
  const file = join(dir, `${tag}.yaml`);
  const a0 = a.workloads[0]!;
  writeFileSync(
    file,
    [
      `uplink: { interface: ${a.uplink}, mode: auto }`,
      `api: { socket: ${socket} }`,
      'connections:',
      `  - { name: c0, local: { interface: ${a0.iface} }, vxlan: { vni: ${a0.vni}, remote: "${b.underlay4}" } }`,
    ].join('\n') + '\n',
  );
  const p = startPinhole(a.ns, ['--config', file], 20_000, 'run');
  await p.ready;
  return { socket, p };
}

interface Conn {
  name: string;
  source: string;
  state: string;
  config: { local: { interface: string }; vxlan?: { vni: number; remote: string } };
}

function errorOf(r: ApiResponse): { code: string; message: string; field?: string } {
  const e = (r.body as { error?: { code: string; message: string; field?: string } } | undefined)?.error;
  assert.ok(e && typeof e.code === 'string' && typeof e.message === 'string', `not an error body: ${JSON.stringify(r.body)}`);
  return e;
}

test('a remote of a family the uplink has no address of: 409 ERR_TUNNEL_NO_ADDRESS naming the field (VXLAN and WireGuard); nothing changes', async () => {
  const lab = buildLab({
    prefix: `ph-${process.pid}-apf`,
    sides: { a: 'pinhole', b: 'kernel' },
    connections: [{ vni: 100 }, { vni: 200 }],
  });
  try {
    const { a, b } = lab;
    // Node a's uplink keeps IPv4 only.
    lab.exec(a.ns, 'ip', ['-6', 'addr', 'flush', 'dev', a.uplink, 'scope', 'global']);
    const { socket } = await daemonLab('family', lab);
    const [a0, a1] = a.workloads;
    const before = (await apiRequest<{ connections: Conn[] }>(socket, 'GET', '/v1/connections')).body.connections;

    const refused = async (name: string, body: unknown, field: string, what: RegExp): Promise<void> => {
      const r = await apiRequest(socket, 'PUT', `/v1/connections/${name}`, body);
      assert.equal(r.status, 409, `${name}: ${JSON.stringify(r.body)}`);
      const e = errorOf(r);
      assert.equal(e.code, 'ERR_TUNNEL_NO_ADDRESS');
      assert.equal(e.field, field);
      assert.match(e.message, what);
    };
    const v6 = { vni: 300, remote: b.underlay6 };
    const noV6 = new RegExp(`is IPv6, but uplink ${a.uplink} has no global IPv6 address`);
    // A new connection, and the existing one changed to an IPv6 remote.
    await refused('c1', { local: { interface: a1!.iface }, vxlan: v6 }, 'vxlan.remote', noV6);
    await refused('c0', { local: { interface: a0!.iface }, vxlan: v6 }, 'vxlan.remote', noV6);
    // WireGuard: an endpoint of the family the uplink lacks.
    const key = join(dir, 'family-wg.key');
    writeFileSync(key, `${encodeKey(generatePrivateKey())}\n`, { mode: 0o600 });
    const wg = {
      local: { interface: a1!.iface },
      wireguard: {
        privateKeyFile: key,
        peer: {
          publicKey: encodeKey(publicKeyOf(generatePrivateKey())),
          endpoint: `[${b.underlay6}]:51820`,
          allowedIPs: ['198.19.1.0/24'],
        },
      },
    };
    await refused('w1', wg, 'wireguard.peer.endpoint', noV6);
    // The CLI prints the code; nothing changed, c0 still carries traffic.
    const r = runCli(['connect', 'c1', '--local', a1!.iface, '--vxlan-vni', '300', '--remote', b.underlay6, '--socket', socket], {
      netns: a.ns,
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^pinhole: ERR_TUNNEL_NO_ADDRESS: vxlan\.remote: remote 2001:db8::2 is IPv6/);
    // The same connections with the same settings (counters move with the pods' own chatter).
    const settings = (cs: Conn[]) => cs.map((c) => ({ name: c.name, source: c.source, state: c.state, config: c.config }));
    const after = (await apiRequest<{ connections: Conn[] }>(socket, 'GET', '/v1/connections')).body.connections;
    assert.deepEqual(settings(after), settings(before));
    assert.equal(after.length, 1);
    assert.equal(ping(lab, a0!.podNs, b.workloads[0]!.podAddr4, 3), 3, 'c0 untouched');
    // The same connection over IPv4 is accepted: only the family was the problem.
    const ok = await apiRequest(socket, 'PUT', '/v1/connections/c1', {
      local: { interface: a1!.iface },
      vxlan: { vni: 300, remote: b.underlay4 },
    });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
  } finally {
    killLeftoverPinholes();
    lab.close();
  }
});

test('concurrent PUT, DELETE and GET against the real daemon: every answer whole and right, the final state exactly the expected one', async () => {
  const N = 20;
  const lab = buildLab({ prefix: `ph-${process.pid}-apc`, sides: { a: 'pinhole', b: 'kernel' }, connections: [{ vni: 100 }] });
  let steady: ReturnType<Lab['spawn']> | undefined;
  try {
    const { a, b } = lab;
    // N more workload interfaces on node a (bare veth pairs: the connections start on them).
    for (let i = 0; i < N; i++) {
      lab.exec(a.ns, 'ip', ['link', 'add', `px${i}`, 'type', 'veth', 'peer', 'name', `px${i}p`]);
      lab.exec(a.ns, 'ip', ['link', 'set', `px${i}`, 'up']);
      lab.exec(a.ns, 'ip', ['link', 'set', `px${i}p`, 'up']);
    }
    const { socket } = await daemonLab('conc', lab);
    const a0 = a.workloads[0]!;
    steady = lab.spawn(a0.podNs, 'ping', ['-n', '-i', '0.05', '-W', '1', b.workloads[0]!.podAddr4]);
    let steadyOut = '';
    steady.stdout!.on('data', (d: Buffer) => (steadyOut += d.toString()));
    const running = steady;
    const steadyDone = new Promise<void>((res) => running.once('close', () => res()));

    const body = (i: number, vni: number) => ({ local: { interface: `px${i}` }, vxlan: { vni, remote: b.underlay4 } });
    const put = (i: number, vni: number) => apiRequest<Conn>(socket, 'PUT', `/v1/connections/x${i}`, body(i, vni));
    const get = (i: number) =>
      apiRequest<Record<string, unknown>>(
        socket,
        'GET',
        ['/v1/status', '/v1/connections', `/v1/connections/x${i}`, '/v1/neighbours'][i % 4]!,
      );
    /** A GET answer: 200 with the document of its path, or 404 for a connection not (yet, or any more) there. */
    const checkGet = (r: ApiResponse<Record<string, unknown>>, i: number): void => {
      assert.equal(r.headers['content-type'], 'application/json');
      if (i % 4 === 2 && r.status === 404) {
        assert.equal(errorOf(r).code, 'ERR_API_NOT_FOUND');
        return;
      }
      assert.equal(r.status, 200, JSON.stringify(r.body));
      if (i % 4 === 0) assert.equal(r.body.state, 'running');
      if (i % 4 === 1) assert.ok(Array.isArray(r.body.connections));
      if (i % 4 === 2) assert.equal(r.body.name, `x${i}`);
      if (i % 4 === 3) assert.ok(Array.isArray(r.body.neighbours));
    };

    // Round 1: N creations on N interfaces, N reads, and requests that must fail, all at once.
    const [created, reads, conflicts, missing] = await Promise.all([
      Promise.all(Array.from({ length: N }, (_, i) => put(i, 1000 + i))),
      Promise.all(Array.from({ length: N }, (_, i) => get(i))),
      Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          apiRequest(socket, 'PUT', `/v1/connections/dup${i}`, {
            local: { interface: a0.iface },
            vxlan: { vni: 5000 + i, remote: b.underlay4 },
          }),
        ),
      ),
      Promise.all(Array.from({ length: 5 }, (_, i) => apiRequest(socket, 'DELETE', `/v1/connections/none${i}`))),
    ]);
    created.forEach((r, i) => {
      assert.equal(r.status, 201, `x${i}: ${JSON.stringify(r.body)}`);
      assert.equal(r.headers.location, `/v1/connections/x${i}`);
      assert.equal(r.body.name, `x${i}`);
      assert.equal(r.body.config.vxlan?.vni, 1000 + i);
      assert.equal(r.body.source, 'api');
    });
    reads.forEach(checkGet);
    for (const r of conflicts) {
      assert.equal(r.status, 409);
      assert.equal(errorOf(r).code, 'ERR_API_CONFLICT');
      assert.equal(errorOf(r).field, 'local.interface');
    }
    for (const r of missing) {
      assert.equal(r.status, 404);
      assert.equal(errorOf(r).code, 'ERR_API_NOT_FOUND');
    }

    // Round 2: delete the first half, replace the second half with new VNIs, read, all at once.
    const half = N / 2;
    const [deleted, replaced, reads2] = await Promise.all([
      Promise.all(Array.from({ length: half }, (_, i) => apiRequest(socket, 'DELETE', `/v1/connections/x${i}`))),
      Promise.all(Array.from({ length: half }, (_, i) => put(half + i, 2000 + half + i))),
      Promise.all(Array.from({ length: N }, (_, i) => get(i))),
    ]);
    for (const r of deleted) {
      assert.equal(r.status, 204);
      assert.equal(r.body, undefined);
    }
    replaced.forEach((r, i) => {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.config.vxlan?.vni, 2000 + half + i);
    });
    reads2.forEach(checkGet);

    // The final state: c0 from the file, x10..x19 with their new VNIs, all running.
    const st = (await apiRequest<{ state: string; connections: Conn[] }>(socket, 'GET', '/v1/status')).body;
    assert.equal(st.state, 'running');
    assert.deepEqual(
      st.connections.map((c) => [c.name, c.source, c.state, c.config.local.interface, c.config.vxlan?.vni]),
      [
        ['c0', 'file', 'up', a0.iface, a0.vni],
        ...Array.from({ length: half }, (_, i) => [`x${half + i}`, 'api', 'up', `px${half + i}`, 2000 + half + i]),
      ],
    );

    steady.kill('SIGINT');
    await steadyDone;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(steadyOut);
    assert.ok(m && Number(m[1]) > 10, steadyOut);
    assert.ok(Number(m[1]) - Number(m[2]) <= 1, `c0 lost pings while the others changed: ${m[0]}`);
  } finally {
    steady?.kill('SIGKILL');
    killLeftoverPinholes();
    lab.close();
  }
});
