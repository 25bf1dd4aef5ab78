/**
 * The rtnetlink mirror against the real kernel. Every socket lives in a namespace this test
 * creates: the mirror runs in a child process started with `ip netns exec` (netlink-child.ts),
 * and waits are event-driven (the child answers when a mirror change event satisfies it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';
import { ROOT, noDad, quietNeighbours, withMirror } from './netlink-mirror-proc.ts';

test('neighbour add, MAC change (replace) and delete appear in the mirror and its shared table, IPv4 and IPv6', async () => {
  requireRoot();
  await withNetns(['nl-nb'], async (ns) => {
    noDad(ns);
    addVeth(ns, 'ph0', ns, 'ph1');
    await withMirror(ns, undefined, async (m) => {
      for (const ip of ['198.18.5.10', '2001:db8:5::10']) {
        ns.ip('neigh', 'add', ip, 'dev', 'ph0', 'lladdr', '02:00:00:00:05:01', 'nud', 'permanent');
        const added = await m.ask({ cmd: 'wait-neigh', dev: 'ph0', ip, mac: '02:00:00:00:05:01' });
        assert.equal(added.stateName, 'PERMANENT');
        assert.deepEqual(await m.ask({ cmd: 'shared', dev: 'ph0', ip }), { state: 0x80, mac: '02:00:00:00:05:01' });

        ns.ip('neigh', 'replace', ip, 'dev', 'ph0', 'lladdr', '02:00:00:00:05:02', 'nud', 'reachable');
        const changed = await m.ask({ cmd: 'wait-neigh', dev: 'ph0', ip, mac: '02:00:00:00:05:02' });
        assert.equal(changed.stateName, 'REACHABLE');
        assert.deepEqual(await m.ask({ cmd: 'shared', dev: 'ph0', ip }), { state: 0x02, mac: '02:00:00:00:05:02' });

        ns.ip('neigh', 'del', ip, 'dev', 'ph0');
        assert.deepEqual(await m.ask({ cmd: 'wait-neigh', dev: 'ph0', ip, mac: null }), { absent: true });
        assert.equal((await m.ask({ cmd: 'shared', dev: 'ph0', ip })).state, -1);
      }
    });
  });
});

test('route add, replace and delete appear in the mirror; longest prefix and metric decide lookups', async () => {
  requireRoot();
  await withNetns(['nl-rt'], async (ns) => {
    noDad(ns);
    addVeth(ns, 'ph0', ns, 'ph1');
    ns.ip('addr', 'add', '198.18.6.1/24', 'dev', 'ph0');
    ns.ip('-6', 'addr', 'add', '2001:db8:6::1/64', 'dev', 'ph0', 'nodad');
    await withMirror(ns, undefined, async (m) => {
      ns.ip('route', 'add', '198.19.0.0/16', 'via', '198.18.6.2');
      await m.ask({ cmd: 'wait-route', dst: '198.19.0.0/16', gateway: '198.18.6.2' });
      ns.ip('route', 'add', '198.19.7.0/24', 'via', '198.18.6.3');
      await m.ask({ cmd: 'wait-route', dst: '198.19.7.0/24', gateway: '198.18.6.3' });
      ns.ip('route', 'add', 'default', 'via', '198.18.6.4');
      await m.ask({ cmd: 'wait-route', dst: '0.0.0.0/0', gateway: '198.18.6.4' });
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '198.19.7.9' })).gateway, '198.18.6.3');
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '198.19.8.9' })).gateway, '198.18.6.2');
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '203.0.113.1' })).gateway, '198.18.6.4');
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '198.18.6.77' })).gateway, undefined, 'connected route');

      ns.ip('route', 'replace', '198.19.7.0/24', 'via', '198.18.6.5');
      await m.ask({ cmd: 'wait-route', dst: '198.19.7.0/24', gateway: '198.18.6.5' });
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '198.19.7.9' })).gateway, '198.18.6.5');
      ns.ip('route', 'del', '198.19.7.0/24');
      await m.ask({ cmd: 'wait-route', dst: '198.19.7.0/24', gateway: null });
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '198.19.7.9' })).gateway, '198.18.6.2');

      // IPv6: two metrics for one prefix, the lower wins; deleting it exposes the other.
      ns.ip('-6', 'route', 'add', '2001:db8:77::/48', 'via', '2001:db8:6::2', 'metric', '100');
      ns.ip('-6', 'route', 'add', '2001:db8:77::/48', 'via', '2001:db8:6::3', 'metric', '50');
      await m.ask({ cmd: 'wait-route', dst: '2001:db8:77::/48', gateway: '2001:db8:6::3' });
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '2001:db8:77::1' })).gateway, '2001:db8:6::3');
      ns.ip('-6', 'route', 'del', '2001:db8:77::/48', 'via', '2001:db8:6::3', 'metric', '50');
      await m.ask({ cmd: 'wait-route', dst: '2001:db8:77::/48', gateway: '2001:db8:6::2' });
      assert.equal((await m.ask({ cmd: 'lookup-route', ip: '2001:db8:77::1' })).gateway, '2001:db8:6::2');

      // IPv4 routes vanish silently when their device goes down: the mirror resyncs.
      ns.ip('link', 'set', 'ph0', 'down');
      await m.ask({ cmd: 'wait-route', dst: '198.19.0.0/16', gateway: null });
      assert.equal(await m.ask({ cmd: 'lookup-route', ip: '198.19.8.9' }), null);
    });
  });
});

test('IPv6 and IPv4 gateways absent from the kernel table are resolved through NTF_USE, without ping', async () => {
  requireRoot();
  await withNetns(['nl-res-a', 'nl-res-gw'], async (a, gw) => {
    noDad(a, gw);
    addVeth(a, 'ph0', gw, 'ph1');
    gw.ip('link', 'set', 'ph1', 'address', '02:00:00:00:99:01');
    a.ip('addr', 'add', '198.18.9.1/24', 'dev', 'ph0');
    gw.ip('addr', 'add', '198.18.9.2/24', 'dev', 'ph1');
    a.ip('-6', 'addr', 'add', '2001:db8:9::1/64', 'dev', 'ph0', 'nodad');
    gw.ip('-6', 'addr', 'add', '2001:db8:9::2/64', 'dev', 'ph1', 'nodad');
    a.ip('route', 'add', '198.19.0.0/16', 'via', '198.18.9.2');
    a.ip('-6', 'route', 'add', '2001:db8:100::/48', 'via', '2001:db8:9::2');
    await withMirror(a, undefined, async (m) => {
      for (const [dst, gwIp] of [
        ['2001:db8:100::7', '2001:db8:9::2'],
        ['198.19.3.4', '198.18.9.2'],
      ] as const) {
        assert.equal(a.ip('neigh', 'show', gwIp, 'dev', 'ph0').trim(), '', `${gwIp} not in the kernel table yet`);
        const r = await m.ask({ cmd: 'resolve', ip: dst, timeoutMs: 8000 });
        assert.equal(r.error, undefined, JSON.stringify(r));
        assert.equal(r.source, 'kernel');
        assert.equal(r.nexthop.ip, gwIp);
        assert.equal(r.mac, '02:00:00:00:99:01');
        assert.match(a.ip('neigh', 'show', gwIp, 'dev', 'ph0'), /lladdr 02:00:00:00:99:01/, 'the kernel resolved it');
        const again = await m.ask({ cmd: 'resolve', ip: dst });
        assert.equal(again.source, 'mirror');
        assert.deepEqual(await m.ask({ cmd: 'shared', dev: 'ph0', ip: gwIp }), { state: 0x02, mac: '02:00:00:00:99:01' });
      }
      // Nobody answers for .99: the request times out (or the kernel marks it FAILED).
      const miss = await m.ask({ cmd: 'resolve', ip: '198.18.9.99', timeoutMs: 400 });
      assert.ok(['ERR_NETLINK_RESOLVE_TIMEOUT', 'ERR_NETLINK_UNRESOLVED'].includes(miss.error), JSON.stringify(miss));
      assert.equal((await m.ask({ cmd: 'resolve', ip: '203.0.113.1' })).error, 'ERR_NETLINK_NO_ROUTE');
      const s = await m.ask({ cmd: 'stats' });
      assert.equal(s.counters.ntfUseRequests, 3);
      assert.equal(s.counters.resolveByKernel, 2);
      assert.equal(s.counters.resolveFromMirror, 2);
    });
  });
});

test('a flood of neighbour changes through a tiny receive buffer overflows, resyncs, and ends identical to the kernel', async () => {
  requireRoot();
  await withNetns(['nl-flood'], async (ns) => {
    // The kernel creates IPv6 multicast (NOARP) neighbours by itself at unpredictable times and
    // does not notify them: the comparison below would race it. Only our entries are compared.
    quietNeighbours(ns);
    addVeth(ns, 'ph0', ns, 'ph1');
    await withMirror(ns, 1024, async (m) => {
      const cmds: string[] = [];
      const ip = (i: number): string => `198.18.${100 + (i >> 8)}.${i & 0xff}`;
      const mac = (i: number, v: number): string =>
        `02:00:${v.toString(16).padStart(2, '0')}:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
      const N = 3000;
      for (let i = 0; i < N; i++) cmds.push(`neigh replace ${ip(i)} dev ph0 lladdr ${mac(i, 1)} nud permanent`);
      for (let i = 0; i < N; i += 2) cmds.push(`neigh replace ${ip(i)} dev ph0 lladdr ${mac(i, 2)} nud permanent`);
      for (let i = 0; i < N; i += 3) cmds.push(`neigh del ${ip(i)} dev ph0`);
      execFileSync('ip', ['-n', ns.name, '-batch', '-'], { input: `${cmds.join('\n')}\n` });
      const c = await m.ask({ cmd: 'converge' });
      assert.equal(c.equal, true, JSON.stringify(c));
      // Our entries plus the IPv6 multicast (NOARP) entries of the two veth ends.
      assert.ok(c.count >= N - Math.ceil(N / 3) && c.count < N - Math.ceil(N / 3) + 16, `count ${c.count}`);
      const s = await m.ask({ cmd: 'stats' });
      assert.ok(s.rcvbuf <= 8192, `receive buffer ${s.rcvbuf}`);
      assert.ok(s.counters.overflows > 0, 'ENOBUFS was observed');
      assert.ok(s.counters.resyncs > 1, 'a resync ran after the overflow');
      // Spot-check the shared table against the final kernel state.
      assert.deepEqual(await m.ask({ cmd: 'shared', dev: 'ph0', ip: ip(2) }), { state: 0x80, mac: mac(2, 2) });
      assert.deepEqual(await m.ask({ cmd: 'shared', dev: 'ph0', ip: ip(1) }), { state: 0x80, mac: mac(1, 1) });
      assert.equal((await m.ask({ cmd: 'shared', dev: 'ph0', ip: ip(3) })).state, -1);
    });
  });
});

test('CLI: pinhole routes/resolve --json, and neigh --watch streams changes until SIGINT', async () => {
  requireRoot();
  await withNetns(['nl-cli-a', 'nl-cli-gw'], async (a, gw) => {
    noDad(a, gw);
    addVeth(a, 'ph0', gw, 'ph1');
    gw.ip('link', 'set', 'ph1', 'address', '02:00:00:00:77:01');
    a.ip('addr', 'add', '198.18.7.1/24', 'dev', 'ph0');
    gw.ip('addr', 'add', '198.18.7.2/24', 'dev', 'ph1');
    a.ip('route', 'add', '198.19.0.0/16', 'via', '198.18.7.2');
    const pinhole = (...args: string[]): string => a.exec(process.execPath, [`${ROOT}/bin/pinhole.js`, ...args]);

    const routes = JSON.parse(pinhole('routes', '--json'));
    assert.ok(routes.some((r: any) => r.dst === '198.19.0.0/16' && r.gateway === '198.18.7.2' && r.dev === 'ph0'));
    assert.match(pinhole('routes'), /198\.19\.0\.0\/16\s+198\.18\.7\.2\s+ph0/);

    const r = JSON.parse(pinhole('resolve', '198.19.1.1', '--json'));
    assert.equal(r.mac, '02:00:00:00:77:01');
    assert.equal(r.source, 'kernel');
    assert.equal(r.nexthop.ip, '198.18.7.2');
    assert.match(pinhole('resolve', '198.19.1.1'), /already in the neighbour table/);

    const watch = spawn('ip', ['netns', 'exec', a.name, process.execPath, `${ROOT}/bin/pinhole.js`, 'neigh', '--watch', '--json'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = createInterface({ input: watch.stdout! })[Symbol.asyncIterator]();
    const next = async (): Promise<any> => JSON.parse((await lines.next()).value as string);
    const first = await next();
    assert.equal(first.event, 'present');
    assert.equal(first.ip, '198.18.7.2');
    a.ip('neigh', 'add', '198.18.7.50', 'dev', 'ph0', 'lladdr', '02:00:00:00:77:50', 'nud', 'permanent');
    let ev = await next();
    while (ev.ip !== '198.18.7.50') ev = await next();
    assert.deepEqual(
      { event: ev.event, mac: ev.mac, state: ev.state, dev: ev.dev },
      { event: 'add', mac: '02:00:00:00:77:50', state: 'PERMANENT', dev: 'ph0' },
    );
    const exited = new Promise<number | null>((res) => watch.once('exit', (code) => res(code)));
    // `ip netns exec` execs node directly, so the signal reaches pinhole itself.
    watch.kill('SIGINT');
    assert.equal(await exited, 0);
  });
});
