/**
 * The parsers behind the demo's numbers (src/control/lab/traffic.ts): iputils ping summaries and
 * iperf3 -J documents, as the tools print them — complete runs, lossy runs, and a client stopped
 * by SIGINT.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIperf, parsePing } from '../../src/control/lab/traffic.ts';

test('ping: summary with round-trip times', () => {
  const text = [
    'PING 198.19.0.2 (198.19.0.2) 56(84) bytes of data.',
    '',
    '--- 198.19.0.2 ping statistics ---',
    '20 packets transmitted, 19 received, 5% packet loss, time 969ms',
    'rtt min/avg/max/mdev = 0.357/0.513/0.783/0.101 ms',
  ].join('\n');
  assert.deepEqual(parsePing('198.19.0.2', text), {
    target: '198.19.0.2',
    sent: 20,
    received: 19,
    lossPct: 5,
    rttMs: { min: 0.357, avg: 0.513, max: 0.783, mdev: 0.101 },
  });
});

test('ping: nothing came back (no rtt line), errors and no summary', () => {
  const lost = '--- 2001:db8:100::2 ping statistics ---\n3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2040ms\n';
  assert.deepEqual(parsePing('2001:db8:100::2', lost), { target: '2001:db8:100::2', sent: 3, received: 0, lossPct: 100 });
  assert.equal(parsePing('x', 'ping: connect: Network is unreachable\n'), undefined);
  assert.equal(parsePing('x', '0 packets transmitted, 0 received')!.lossPct, 100);
});

const tcpDoc = {
  start: { test_start: { protocol: 'TCP' } },
  end: {
    sum_sent: { seconds: 2.0001, bytes: 540016640, bits_per_second: 2159945603.0, retransmits: 3 },
    sum_received: { seconds: 2.0004, bytes: 536756828, bits_per_second: 2146574384.8 },
  },
};

test('iperf3 TCP: sent, received, retransmits', () => {
  assert.deepEqual(parseIperf(JSON.stringify(tcpDoc)), {
    protocol: 'tcp',
    seconds: 2.0001,
    sentBytes: 540016640,
    sentBps: 2159945603.0,
    receivedBps: 2146574384.8,
    retransmits: 3,
    interrupted: false,
  });
});

test('iperf3 TCP stopped by SIGINT: what was sent until then, no received figure', () => {
  const doc = {
    ...tcpDoc,
    error: 'interrupt - the client has terminated',
    end: { ...tcpDoc.end, sum_received: { seconds: 2.0, bytes: 0, bits_per_second: 0 } },
  };
  const r = parseIperf(JSON.stringify(doc));
  assert.equal(r.interrupted, true);
  assert.equal(r.receivedBps, undefined);
  assert.equal(r.sentBps, 2159945603.0);
});

test('iperf3 UDP: the server-side loss and delivered rate', () => {
  const doc = {
    start: { test_start: { protocol: 'UDP' } },
    end: {
      sum: {
        seconds: 2.004,
        bytes: 124958400,
        bits_per_second: 499800863,
        jitter_ms: 0.003,
        lost_packets: 312,
        packets: 89256,
        lost_percent: 0.3495,
      },
      sum_sent: { seconds: 2.0001, bytes: 124958400, bits_per_second: 499800863, lost_packets: 0, packets: 89256, lost_percent: 0 },
      sum_received: {
        seconds: 2.004,
        bytes: 124521600,
        bits_per_second: 497073860,
        jitter_ms: 0.003,
        lost_packets: 312,
        packets: 89256,
        lost_percent: 0.3495,
      },
    },
  };
  const r = parseIperf(JSON.stringify(doc));
  assert.equal(r.protocol, 'udp');
  assert.deepEqual(
    [r.sentBps, r.receivedBps, r.lostPackets, r.packets, r.lostPct, r.jitterMs],
    [499800863, 497073860, 312, 89256, 0.3495, 0.003],
  );
  assert.equal(r.retransmits, undefined);
});

test('iperf3 errors are ERR_LAB_TRAFFIC with its message', () => {
  assert.throws(() => parseIperf('{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}'), {
    code: 'ERR_LAB_TRAFFIC',
    message: /Connection refused/,
  });
  assert.throws(() => parseIperf('iperf3: error'), { code: 'ERR_LAB_TRAFFIC', message: /not JSON/ });
});
