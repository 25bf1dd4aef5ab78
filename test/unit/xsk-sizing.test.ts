/**
 * AF_XDP ring and UMEM sizes (src/uplink/xsk/sizing.ts) and the two ways users set them: the
 * config file's `uplink.rings` (strict, validated) and `pinhole uplink --ring-size N` (a usage
 * error, exit 2, before anything is set up). Pure: no privileges, no interfaces.
 */
import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, validateConfig, type PinholeConfig } from '../../src/config/index.ts';
import { main } from '../../src/control/cli.ts';
import type { CommandIO } from '../../src/control/io.ts';
import { PinholeError } from '../../src/sys/index.ts';
import {
  isRingSize,
  txOnlyRings,
  umemBytes,
  umemFrames,
  xskFrameSize,
  xskRings,
  XSK_SMALL_FRAME_MAX_MTU,
  XSK_DEFAULT_RX_RING,
  XSK_DEFAULT_TX_RING,
  XSK_RING_MAX,
  XSK_RING_MIN,
} from '../../src/uplink/xsk/sizing.ts';

describe('ring sizes', () => {
  it('accepts powers of two 64..32768 only', () => {
    for (let n = XSK_RING_MIN; n <= XSK_RING_MAX; n *= 2) assert.ok(isRingSize(n), String(n));
    for (const n of [0, 1, 32, 63, 65, 96, 3000, 65536, -64, 64.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.ok(!isRingSize(n), String(n));
    }
  });

  it('fill follows rx and completion follows tx; defaults where absent', () => {
    assert.deepEqual(xskRings(), {
      rx: XSK_DEFAULT_RX_RING,
      tx: XSK_DEFAULT_TX_RING,
      fill: XSK_DEFAULT_RX_RING,
      comp: XSK_DEFAULT_TX_RING,
    });
    assert.deepEqual(xskRings({ rx: 16384 }), { rx: 16384, tx: XSK_DEFAULT_TX_RING, fill: 16384, comp: XSK_DEFAULT_TX_RING });
    assert.deepEqual(xskRings({ rx: 64, tx: 128 }), { rx: 64, tx: 128, fill: 64, comp: 128 });
    assert.deepEqual(xskRings({ rx: undefined, tx: 4096 }).tx, 4096);
  });

  it('a bad size is ERR_XSK_CONFIG naming the ring', () => {
    for (const [o, ring] of [
      [{ rx: 3000 }, 'rx'],
      [{ tx: 65536 }, 'tx'],
      [{ rx: 32 }, 'rx'],
    ] as const) {
      assert.throws(
        () => xskRings(o),
        (e: unknown) => e instanceof PinholeError && e.code === 'ERR_XSK_CONFIG' && e.message.startsWith(`${ring} ring size`),
      );
    }
  });

  it('the default RX ring is deeper than the TX ring (bursts), both valid', () => {
    assert.ok(isRingSize(XSK_DEFAULT_RX_RING) && isRingSize(XSK_DEFAULT_TX_RING));
    assert.ok(XSK_DEFAULT_RX_RING > 2048);
  });

  it('a transmit-only port gets the smallest RX and fill rings', () => {
    assert.deepEqual(txOnlyRings(), { rx: XSK_RING_MIN, tx: XSK_DEFAULT_TX_RING, fill: XSK_RING_MIN, comp: XSK_DEFAULT_TX_RING });
    assert.equal(umemFrames(txOnlyRings(2048)), 4096);
  });

  it('the UMEM holds a full fill ring and a full TX ring, rounded up to a power of two', () => {
    const cases: [number, number, number][] = [
      [2048, 2048, 4096],
      [4096, 2048, 8192],
      [8192, 2048, 16384],
      [16384, 2048, 32768],
      [32768, 32768, 65536],
      [64, 64, 128],
      [64, 2048, 4096],
    ];
    for (const [rx, tx, frames] of cases) {
      const r = xskRings({ rx, tx });
      const n = umemFrames(r);
      assert.equal(n, frames, `${rx}/${tx}`);
      assert.ok(n >= r.fill + r.tx && (n & (n - 1)) === 0);
      assert.equal(umemBytes(r), n * 4096);
    }
  });
});

describe('config: uplink.rings', () => {
  const doc = (rings: unknown): unknown => ({ uplink: { interface: 'eth0', rings } });
  const issue = (rings: unknown): { field: string; message: string } => {
    try {
      validateConfig(doc(rings));
    } catch (err) {
      assert.ok(err instanceof PinholeError);
      assert.equal(err.code, 'ERR_CONFIG_INVALID');
      const [first] = (err.details as { errors: { field: string; message: string }[] }).errors;
      return first!;
    }
    assert.fail(`accepted rings ${JSON.stringify(rings)}`);
  };

  it('takes rx and tx, each optional; absent stays absent (the defaults apply at start)', () => {
    assert.deepEqual(validateConfig(doc({ rx: 8192, tx: 2048 })).uplink.rings, { rx: 8192, tx: 2048 });
    assert.deepEqual(validateConfig(doc({ rx: 16384 })).uplink.rings, { rx: 16384 });
    assert.deepEqual(validateConfig(doc({ tx: 64 })).uplink.rings, { tx: 64 });
    assert.equal(validateConfig({ uplink: { interface: 'eth0' } }).uplink.rings, undefined);
  });

  it('parses from YAML, block and flow style', () => {
    const flow = parseConfig('uplink: { interface: eth0, rings: { rx: 8192, tx: 2048 } }\n');
    const block = parseConfig('uplink:\n  interface: eth0\n  rings:\n    rx: 32768\n');
    assert.deepEqual(flow.uplink.rings, { rx: 8192, tx: 2048 });
    assert.deepEqual(block.uplink.rings, { rx: 32768 });
  });

  it('refuses sizes that are not powers of two 64..32768, wrong types and unknown keys', () => {
    const msg = 'must be a power of two 64..32768';
    for (const rx of [100, 32, 65536, 0, -2048, 2048.5]) assert.deepEqual(issue({ rx }), { field: 'uplink.rings.rx', message: msg });
    assert.deepEqual(issue({ tx: 3 }), { field: 'uplink.rings.tx', message: msg });
    assert.deepEqual(issue({ rx: '8192' }), { field: 'uplink.rings.rx', message: `${msg} (got a string)` });
    assert.deepEqual(issue({ fill: 8192 }), { field: 'uplink.rings.fill', message: "unknown key 'fill' (allowed: rx, tx)" });
    assert.deepEqual(issue(8192), { field: 'uplink.rings', message: 'must be a mapping (got a number)' });
    assert.deepEqual(issue(null), { field: 'uplink.rings', message: 'must be a mapping (got an empty value)' });
  });

  it('a parsed config validates again unchanged (the daemon re-checks merged configs)', () => {
    const cfg: PinholeConfig = validateConfig(doc({ rx: 4096, tx: 1024 }));
    assert.deepEqual(validateConfig(structuredClone(cfg)), cfg);
  });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CommandIO = { out: (s) => void (out += `${s}\n`), err: (s) => void (err += `${s}\n`) };
  const code = await main(argv, io);
  return { code, out, err };
}

for (const size of ['100', '32', '65536', '0', '8k', '0x2000', '8192.0', '']) {
  test(`pinhole uplink --ring-size ${size === '' ? '""' : size} is a usage error (exit 2, nothing set up)`, async () => {
    const r = await cli('uplink', '--iface', 'ph-no-if0', '--ring-size', size);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^pinhole: ERR_CLI_USAGE: --ring-size .*a power of two 64\.\.32768/);
    assert.equal(r.out, '');
  });
}

test('pinhole bench --ring-size (hidden) is checked the same way', async () => {
  const r = await cli('bench', '--ring-size', '3000');
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /^pinhole: ERR_CLI_USAGE: --ring-size 3000: a power of two 64\.\.32768/);
});

test('pinhole uplink --help shows --ring-size', async () => {
  const r = await cli('uplink', '--help');
  assert.equal(r.code, 0);
  assert.match(r.out, /--ring-size N/);
});

test('xskFrameSize: 2 KiB frames when every AF_XDP port’s MTU fits one (≤ 1770), else 4 KiB; an unknown MTU is 4 KiB', () => {
  // 2048 − 256 (XDP_PACKET_HEADROOM) − 14 − 4 (an 802.1Q tag) − 4 (an FCS some drivers count).
  assert.equal(XSK_SMALL_FRAME_MAX_MTU, 1770);
  assert.equal(xskFrameSize([1500]), 2048);
  assert.equal(xskFrameSize([1500, 1450, 1770]), 2048);
  assert.equal(xskFrameSize([1500, 1771]), 4096, 'one port above: the shared UMEM has one chunk size');
  assert.equal(xskFrameSize([3700]), 4096);
  assert.equal(xskFrameSize([1500, undefined]), 4096);
  assert.equal(xskFrameSize([]), 4096);
  assert.equal(umemBytes(xskRings(), 2048) * 2, umemBytes(xskRings()), 'half the pinned memory');
});
