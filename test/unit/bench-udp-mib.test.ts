/**
 * `pinhole bench`'s reading of the kernel's UDP MIB (/proc/net/snmp) without privileges: the
 * counter by its name in the `Udp:` header line, and a clear error for a missing one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseUdpMib } from '../../src/control/bench/netns.ts';

const SNMP = [
  'Ip: Forwarding DefaultTTL InReceives',
  'Ip: 1 64 100',
  'Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
  'Udp: 5000 7 120 4000 115 0 0 0 0',
  'UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors',
  'UdpLite: 0 0 0 0 0 0 0 0 0',
].join('\n');

test('parseUdpMib: a counter by name from the Udp lines (not UdpLite, not Ip)', () => {
  assert.equal(parseUdpMib(SNMP, 'NoPorts'), 7);
  assert.equal(parseUdpMib(SNMP, 'RcvbufErrors'), 115);
  assert.equal(parseUdpMib(SNMP, 'InDatagrams'), 5000);
});

test('parseUdpMib: a counter the kernel does not print, or no Udp lines, is ERR_BENCH_COMMAND', () => {
  assert.throws(
    () => parseUdpMib(SNMP, 'Nope'),
    (e: unknown) => (e as { code?: string }).code === 'ERR_BENCH_COMMAND',
  );
  assert.throws(() => parseUdpMib('Ip: a\nIp: 1\n', 'NoPorts', 'ns1'), /ns1: no Udp NoPorts/);
  assert.throws(() => parseUdpMib('Udp: NoPorts\n', 'NoPorts'), /no Udp NoPorts/);
});
