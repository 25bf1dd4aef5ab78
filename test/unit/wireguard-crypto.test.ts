/**
 * WireGuard primitives against published vectors: X25519 (RFC 7748), BLAKE2s (RFC 7693: the
 * "abc" example and the Appendix E self-test), ChaCha20-Poly1305 (RFC 8439 section 2.8.2),
 * HChaCha20 and XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha). Our BLAKE2s is also compared with
 * node:crypto's, and libsodium's AEAD backend with node:crypto's, on random inputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { blake2s, blake2sFinal, blake2sInit, blake2sUpdate } from '../../src/tunnel/wireguard/blake2s.ts';
import {
  NodeAead,
  aeadOpen,
  aeadOpenNonce,
  aeadSeal,
  aeadSealNonce,
  hchacha20,
  hmac,
  kdf1,
  kdf2,
  kdf3,
  x25519,
  x25519Public,
  xaeadOpen,
  xaeadSeal,
} from '../../src/tunnel/wireguard/crypto.ts';
import { SodiumAead, sodiumXOpen, sodiumXSeal } from '../../src/sys/sodium.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const range = (from: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => from + i);

test('X25519: RFC 7748 section 5.2 scalar multiplication vectors', () => {
  assert.equal(
    hex(
      x25519(
        unhex('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'),
        unhex('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'),
      )!,
    ),
    'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
  );
  assert.equal(
    hex(
      x25519(
        unhex('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'),
        unhex('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a413'),
      )!,
    ),
    '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957',
  );
});

test('X25519: RFC 7748 section 6.1 Diffie-Hellman', () => {
  const a = unhex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const b = unhex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  assert.equal(hex(x25519Public(a)), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  assert.equal(hex(x25519Public(b)), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
  assert.equal(hex(x25519(a, x25519Public(b))!), shared);
  assert.equal(hex(x25519(b, x25519Public(a))!), shared);
});

test('X25519: a low-order public key gives undefined (all-zero shared secret)', () => {
  assert.equal(x25519(range(1, 32), new Uint8Array(32)), undefined);
});

test('BLAKE2s: RFC 7693 Appendix B ("abc") and node:crypto on random inputs', () => {
  assert.equal(hex(blake2s(32, undefined, utf8('abc'))), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  for (const n of [0, 1, 63, 64, 65, 127, 128, 129, 1000]) {
    const d = randomBytes(n);
    assert.equal(hex(blake2s(32, undefined, d)), createHash('blake2s256').update(d).digest('hex'), `length ${n}`);
  }
  // Split updates agree with one-shot.
  const d = randomBytes(300);
  blake2sInit(32);
  blake2sUpdate(d, 0, 7);
  blake2sUpdate(d, 7, 64);
  blake2sUpdate(d, 71, 229);
  const out = new Uint8Array(32);
  blake2sFinal(out);
  assert.equal(hex(out), createHash('blake2s256').update(d).digest('hex'));
});

test('BLAKE2s: RFC 7693 Appendix E self-test (keyed and unkeyed, all output lengths)', () => {
  // The RFC's deterministic input generator: a Fibonacci-like sequence, top byte of each term.
  const seq = (len: number, seed: number): Uint8Array => {
    const out = new Uint8Array(len);
    let a = Math.imul(0xdead4bad, seed) >>> 0;
    let b = 1;
    for (let i = 0; i < len; i++) {
      const t = (a + b) >>> 0;
      a = b;
      b = t;
      out[i] = (t >>> 24) & 0xff;
    }
    return out;
  };
  const parts: Uint8Array[] = [];
  for (const outlen of [16, 20, 28, 32]) {
    for (const inlen of [0, 3, 64, 65, 255, 1024]) {
      const input = seq(inlen, inlen);
      parts.push(blake2s(outlen, undefined, input));
      parts.push(blake2s(outlen, seq(outlen, outlen), input));
    }
  }
  assert.equal(hex(blake2s(32, undefined, ...parts)), '6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe');
});

test('HMAC-BLAKE2s and the KDF chain follow their definitions', () => {
  const key = randomBytes(32);
  const data = randomBytes(77);
  assert.equal(hex(hmac(key, data)), createHmac('blake2s256', key).update(data).digest('hex'));
  // HMAC by hand (RFC 2104 with a 64-byte block): checks node's HMAC uses BLAKE2s's block size.
  const ipad = Buffer.alloc(64, 0x36);
  const opad = Buffer.alloc(64, 0x5c);
  for (let i = 0; i < 32; i++) {
    ipad[i]! ^= key[i]!;
    opad[i]! ^= key[i]!;
  }
  const inner = blake2s(32, undefined, ipad, data);
  assert.equal(hex(hmac(key, data)), hex(blake2s(32, undefined, opad, inner)));
  const t0 = hmac(key, data);
  const t1 = hmac(t0, new Uint8Array([1]));
  const t2 = hmac(t0, t1, new Uint8Array([2]));
  const t3 = hmac(t0, t2, new Uint8Array([3]));
  assert.equal(hex(kdf1(key, data)), hex(t1));
  assert.deepEqual(kdf2(key, data).map(hex), [hex(t1), hex(t2)]);
  assert.deepEqual(kdf3(key, data).map(hex), [hex(t1), hex(t2), hex(t3)]);
});

const SUNSCREEN = utf8(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);

test('ChaCha20-Poly1305: RFC 8439 section 2.8.2', () => {
  const key = range(0x80, 32);
  const ad = unhex('50515253c0c1c2c3c4c5c6c7');
  // The RFC's nonce (07000000 4041424344454647) does not start with WireGuard's four zero
  // bytes, so this goes through the general-nonce function under aeadSeal.
  const sealed = aeadSealNonce(key, unhex('070000004041424344454647'), SUNSCREEN, ad);
  const ct = Buffer.from(sealed.subarray(0, SUNSCREEN.length));
  assert.equal(
    ct.toString('hex'),
    'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116',
  );
  assert.equal(hex(sealed.subarray(SUNSCREEN.length)), '1ae10b594f09e26a7e902ecbd0600691');
  assert.deepEqual(aeadOpenNonce(key, unhex('070000004041424344454647'), sealed, ad), SUNSCREEN);
});

test('AEAD (WireGuard nonce): seal/open round trip, tampering and wrong counter fail', () => {
  const key = randomBytes(32);
  const ad = randomBytes(32);
  const sealed = aeadSeal(key, 7, SUNSCREEN, ad);
  assert.equal(sealed.length, SUNSCREEN.length + 16);
  assert.deepEqual(aeadOpen(key, 7, sealed, ad), SUNSCREEN);
  assert.equal(aeadOpen(key, 8, sealed, ad), undefined);
  assert.equal(aeadOpen(key, 7, sealed, randomBytes(32)), undefined);
  sealed[3]! ^= 1;
  assert.equal(aeadOpen(key, 7, sealed, ad), undefined);
});

test('HChaCha20: draft-irtf-cfrg-xchacha section 2.2.1', () => {
  assert.equal(
    hex(hchacha20(range(0, 32), unhex('000000090000004a0000000031415927'))),
    '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc',
  );
});

test('XChaCha20-Poly1305: draft-irtf-cfrg-xchacha appendix A.3.1, and libsodium agrees', () => {
  const key = range(0x80, 32);
  const nonce = range(0x40, 24);
  const ad = unhex('50515253c0c1c2c3c4c5c6c7');
  const expected =
    'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e' +
    'c0875924c1c7987947deafd8780acf49';
  assert.equal(hex(xaeadSeal(key, nonce, SUNSCREEN, ad)), expected);
  assert.deepEqual(xaeadOpen(key, nonce, unhex(expected), ad), SUNSCREEN);
  assert.equal(hex(sodiumXSeal(key, nonce, SUNSCREEN, ad)), expected);
  for (let i = 0; i < 20; i++) {
    const k = randomBytes(32);
    const n = randomBytes(24);
    const p = randomBytes(i * 7);
    const a = randomBytes(16);
    const s = xaeadSeal(k, n, p, a);
    assert.equal(hex(s), hex(sodiumXSeal(k, n, p, a)));
    assert.deepEqual(sodiumXOpen(k, n, s, a), new Uint8Array(p));
  }
});

test('data path AEADs: libsodium (koffi) and node:crypto produce the same bytes, in place and across buffers', () => {
  const backends = [new NodeAead(), new SodiumAead()];
  const key = randomBytes(32);
  for (const len of [0, 1, 15, 16, 64, 1400, 1420]) {
    const plain = randomBytes(len);
    const outs = backends.map((b) => {
      const buf = new Uint8Array(new ArrayBuffer(2048));
      buf.set(plain, 48);
      assert.equal(b.seal(key, 0x1_0000_0003, buf, 48, len, buf, 48), len + 16, `${b.name} seal ${len}`);
      return hex(buf.subarray(48, 48 + len + 16));
    });
    assert.equal(outs[0], outs[1], `length ${len}`);
    // And the reference: the handshake AEAD (node:crypto, no AD).
    assert.equal(outs[0], hex(aeadSeal(key, 0x1_0000_0003, plain, new Uint8Array(0))));
    for (const b of backends) {
      const buf = new Uint8Array(new ArrayBuffer(4096));
      buf.set(unhex(outs[0]!), 100);
      const dst = new Uint8Array(new ArrayBuffer(4096));
      assert.equal(b.open(key, 0x1_0000_0003, buf, 100, len + 16, dst, 7), len, `${b.name} open ${len}`);
      assert.deepEqual(dst.subarray(7, 7 + len), new Uint8Array(plain));
      assert.equal(b.open(key, 0x1_0000_0004, buf, 100, len + 16, dst, 7), -1, `${b.name} wrong counter`);
      buf[100 + len]! ^= 0x80;
      assert.equal(b.open(key, 0x1_0000_0003, buf, 100, len + 16, dst, 7), -1, `${b.name} forged tag`);
    }
  }
});

test('libsodium backend: small on-heap buffers go through its bounce area', () => {
  const s = new SodiumAead();
  const key = randomBytes(32);
  const small = new Uint8Array(40);
  small.set(randomBytes(8), 4);
  const expect = aeadSeal(key, 9, small.slice(4, 12), new Uint8Array(0));
  assert.equal(s.seal(key, 9, small, 4, 8, small, 4), 24);
  assert.deepEqual(small.subarray(4, 28), expect);
  assert.equal(s.open(key, 9, small, 4, 24, small, 4), 8);
  assert.equal(s.seal(key, 9, small, 4, 30, small, 4), -1, 'out of bounds');
});
