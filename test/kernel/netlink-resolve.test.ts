/**
 * `pinhole resolve` refuses destinations that never have a next hop, in a real namespace: no
 * NTF_USE request goes out, so the kernel neither ARPs for the node's own address (leaving a
 * FAILED entry) nor resolves a gateway for loopback, multicast or broadcast. --timeout beyond
 * what a Node timer takes is a usage error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';
import { runCli } from '../helpers/cli.ts';
import { noDad } from './netlink-mirror-proc.ts';

test('resolve: own, loopback, multicast, broadcast and unspecified addresses are refused with stable codes; no neighbour entry is created', async () => {
  requireRoot();
  await withNetns(['nl-rsv-a', 'nl-rsv-gw'], async (a, gw) => {
    noDad(a, gw);
    addVeth(a, 'ph0', gw, 'ph1');
    gw.ip('link', 'set', 'ph1', 'address', '02:00:00:00:78:01');
    a.ip('addr', 'add', '198.18.8.1/24', 'dev', 'ph0');
    gw.ip('addr', 'add', '198.18.8.2/24', 'dev', 'ph1');
    a.ip('-6', 'addr', 'add', '2001:db8:8::1/64', 'dev', 'ph0', 'nodad');
    a.ip('route', 'add', 'default', 'via', '198.18.8.2');
    a.ip('-6', 'route', 'add', 'default', 'via', '2001:db8:8::2');
    const before = a.ip('-j', 'neigh', 'show', 'nud', 'all');

    const cases: [string, string, string][] = [
      ['198.18.8.1', 'ERR_NETLINK_LOCAL_ADDRESS', 'own'],
      ['2001:db8:8::1', 'ERR_NETLINK_LOCAL_ADDRESS', 'own'],
      ['127.0.0.1', 'ERR_NETLINK_LOCAL_ADDRESS', 'loopback'],
      ['::1', 'ERR_NETLINK_LOCAL_ADDRESS', 'loopback'],
      ['224.0.0.1', 'ERR_NETLINK_BAD_ADDRESS', 'multicast'],
      ['ff02::1', 'ERR_NETLINK_BAD_ADDRESS', 'multicast'],
      ['255.255.255.255', 'ERR_NETLINK_BAD_ADDRESS', 'broadcast'],
      ['198.18.8.255', 'ERR_NETLINK_BAD_ADDRESS', 'broadcast'],
      ['0.0.0.0', 'ERR_NETLINK_BAD_ADDRESS', 'unspecified'],
      ['::', 'ERR_NETLINK_BAD_ADDRESS', 'unspecified'],
    ];
    for (const [ip, code, kind] of cases) {
      const r = runCli(['resolve', ip, '--timeout', '500'], { netns: a.name });
      assert.equal(r.code, 1, `${ip}: exit code (${r.stderr})`);
      assert.match(r.stderr, new RegExp(`^pinhole: ${code}: `, 'm'), ip);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `${ip}: no stack trace`);
      assert.ok(r.stderr.includes(kind === 'own' ? 'own address' : kind), `${ip}: the message names the kind: ${r.stderr}`);
    }
    assert.equal(a.ip('-j', 'neigh', 'show', 'nud', 'all'), before, 'no neighbour entry was created (no FAILED entry for our own address)');

    for (const t of ['2147483648', '4294967297', '0']) {
      const r = runCli(['resolve', '198.18.8.2', '--timeout', t], { netns: a.name });
      assert.equal(r.code, 2, `--timeout ${t}: usage error (${r.stderr})`);
      assert.match(r.stderr, /ERR_CLI_USAGE: --timeout/);
    }
    // The largest timer is accepted, and an ordinary destination still resolves.
    const ok = runCli(['resolve', '198.19.1.1', '--json', '--timeout', '2147483647'], { netns: a.name });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).mac, '02:00:00:00:78:01');
  });
});
