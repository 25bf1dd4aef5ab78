/**
 * WireGuard keys and `pinhole wg genkey|pubkey`: the format of `wg` (base64 of 32 bytes), known
 * key pairs (RFC 7748 section 6.1, as `wg pubkey` prints them), clamping, refusals, and the CLI
 * end to end (bin/pinhole.js with the key on stdin).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { decodeKey, encodeKey, generatePrivateKey, publicKeyOf } from '../../src/tunnel/wireguard/keys.ts';
import { run } from '../../src/control/commands/wg.ts';
import { main } from '../../src/control/cli.ts';
import { PINHOLE_BIN } from '../helpers/cli.ts';

// RFC 7748 6.1 (Alice, Bob): private keys as given (unclamped), public keys as `wg pubkey` prints them.
const KNOWN = [
  ['dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=', 'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo='],
  ['XasIfmJKikt54X+Lg4AO5m87sSkmGLb9HC+LJ/+I4Os=', '3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08='],
] as const;

test('public keys of known private keys', () => {
  for (const [priv, pub] of KNOWN) assert.equal(encodeKey(publicKeyOf(decodeKey(priv))), pub);
});

test('generated private keys are clamped and round-trip through base64', () => {
  for (let i = 0; i < 50; i++) {
    const k = generatePrivateKey();
    assert.equal(k[0]! & 7, 0);
    assert.equal(k[31]! & 0xc0, 0x40);
    const s = encodeKey(k);
    assert.match(s, /^[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(decodeKey(`  ${s}\n`), k);
  }
});

test('malformed keys are refused with ERR_WG_KEY', () => {
  for (const bad of [
    '',
    'abc',
    `${KNOWN[0][0].slice(0, 43)}`,
    `${KNOWN[0][0]}=`,
    'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp=',
    '!'.repeat(44),
  ])
    assert.throws(() => decodeKey(bad), { code: 'ERR_WG_KEY' }, JSON.stringify(bad));
});

test('wg pubkey reads stdin, wg genkey writes a key; bad subcommands are usage errors', async () => {
  const out: string[] = [];
  const io = { out: (s: string) => void out.push(s), err: () => {} };
  assert.equal(await run(['pubkey'], io, { readStdin: async () => `${KNOWN[1][0]}\n` }), 0);
  assert.deepEqual(out, [KNOWN[1][1]]);
  assert.equal(await run(['genkey'], io), 0);
  assert.deepEqual(decodeKey(out[1]!).length, 32);
  await assert.rejects(run(['genkey', 'x'], io), { code: 'ERR_CLI_USAGE' });
  await assert.rejects(run(['frob'], io), { code: 'ERR_CLI_USAGE' });
  let err = '';
  assert.equal(await main(['wg'], { out: () => {}, err: (s) => void (err += s) }), 2);
  assert.match(err, /usage: pinhole wg genkey/);
});

test('the CLI end to end: genkey | pubkey, and a bad key exits 1 with ERR_WG_KEY', () => {
  const gen = spawnSync(process.execPath, [PINHOLE_BIN, 'wg', 'genkey'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, gen.stderr);
  const priv = gen.stdout.trim();
  const pub = spawnSync(process.execPath, [PINHOLE_BIN, 'wg', 'pubkey'], { encoding: 'utf8', input: gen.stdout });
  assert.equal(pub.status, 0, pub.stderr);
  assert.equal(pub.stdout.trim(), encodeKey(publicKeyOf(decodeKey(priv))));
  assert.match(pub.stdout, /^[A-Za-z0-9+/]{43}=\n$/);
  const known = spawnSync(process.execPath, [PINHOLE_BIN, 'wg', 'pubkey'], { encoding: 'utf8', input: `${KNOWN[0][0]}\n` });
  assert.equal(known.stdout, `${KNOWN[0][1]}\n`);
  const bad = spawnSync(process.execPath, [PINHOLE_BIN, 'wg', 'pubkey'], { encoding: 'utf8', input: 'nope\n' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /ERR_WG_KEY/);
  assert.doesNotMatch(bad.stderr, /nope/, 'the input is not echoed');
});
