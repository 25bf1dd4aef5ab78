/**
 * WireGuard's primitives (whitepaper section 5.4, "Protocol & Cryptography"):
 *
 *   DH(priv, pub)      X25519 (RFC 7748)                       node:crypto KeyObjects
 *   HASH(in)           BLAKE2s-256                             node:crypto 'blake2s256'
 *   MAC(key, in)       keyed BLAKE2s, 16-byte output           blake2s.ts
 *   HMAC(key, in)      HMAC over BLAKE2s-256 (64-byte block)   node:crypto createHmac
 *   KDFn(key, in)      τ0 = HMAC(key, in); τ1 = HMAC(τ0, 0x1); τi = HMAC(τ0, τi-1 ‖ i)
 *   AEAD(key, n, p, a) ChaCha20-Poly1305 (RFC 8439), nonce = 4 zero bytes ‖ n as 64-bit LE
 *   XAEAD(key, n, p, a) XChaCha20-Poly1305: HChaCha20 subkey from the first 16 nonce bytes,
 *                      then AEAD with nonce 4 zero bytes ‖ last 8 nonce bytes
 *
 * These are the handshake's and cookies' functions: they allocate and are called a few times
 * per handshake. The per-packet AEAD is the `DataAead` interface below, with two backends:
 * `NodeAead` (node:crypto, portable, a new cipher object per packet) and `SodiumAead`
 * (src/sys/sodium.ts, libsodium through the FFI, no allocation); bench/wireguard-aead.ts picks.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  randomBytes,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { blake2s } from './blake2s.ts';

export const KEY_LEN = 32;
export const TAG_LEN = 16;

export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('blake2s256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** MAC(key, input): keyed BLAKE2s with a 16-byte output. */
export function mac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  return blake2s(16, key, ...parts);
}

export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac('blake2s256', key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

const ONE = new Uint8Array([1]);
const TWO = new Uint8Array([2]);
const THREE = new Uint8Array([3]);

export function kdf1(key: Uint8Array, input: Uint8Array): Uint8Array {
  const t0 = hmac(key, input);
  return hmac(t0, ONE);
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const t0 = hmac(key, input);
  const t1 = hmac(t0, ONE);
  const t2 = hmac(t0, t1, TWO);
  return [t1, t2];
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const t0 = hmac(key, input);
  const t1 = hmac(t0, ONE);
  const t2 = hmac(t0, t1, TWO);
  const t3 = hmac(t0, t2, THREE);
  return [t1, t2, t3];
}

function nonce96(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32LE(counter >>> 0, 4);
  n.writeUInt32LE(Math.floor(counter / 0x100000000), 8);
  return n;
}

/** AEAD(key, counter, plain, ad) → ciphertext ‖ tag. */
export function aeadSeal(key: Uint8Array, counter: number, plain: Uint8Array, ad: Uint8Array): Uint8Array {
  return aeadSealNonce(key, nonce96(counter), plain, ad);
}

/** The inverse of aeadSeal; undefined when the tag does not verify. */
export function aeadOpen(key: Uint8Array, counter: number, sealed: Uint8Array, ad: Uint8Array): Uint8Array | undefined {
  return aeadOpenNonce(key, nonce96(counter), sealed, ad);
}

/** ChaCha20-Poly1305 with an arbitrary 12-byte nonce (RFC 8439 test vectors). */
export function aeadSealNonce(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, ad: Uint8Array): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  c.setAAD(ad, { plaintextLength: plain.length });
  const out = new Uint8Array(plain.length + TAG_LEN);
  out.set(c.update(plain), 0);
  c.final();
  out.set(c.getAuthTag(), plain.length);
  return out;
}

export function aeadOpenNonce(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | undefined {
  if (sealed.length < TAG_LEN) return undefined;
  const n = sealed.length - TAG_LEN;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  d.setAAD(ad, { plaintextLength: n });
  d.setAuthTag(sealed.subarray(n));
  const out = new Uint8Array(n);
  out.set(d.update(sealed.subarray(0, n)), 0);
  try {
    d.final();
  } catch {
    return undefined;
  }
  return out;
}

// --- XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): HChaCha20 + the IETF AEAD ---

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

/**
 * HChaCha20(key, 16-byte nonce) → 32-byte subkey: the ChaCha20 block function's 20 rounds over
 * constants ‖ key ‖ nonce, without the final addition, keeping words 0..3 and 12..15.
 */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const s = new Uint32Array(16);
  s[0] = 0x61707865;
  s[1] = 0x3320646e;
  s[2] = 0x79622d32;
  s[3] = 0x6b206574;
  const kv = new DataView(key.buffer, key.byteOffset, 32);
  for (let i = 0; i < 8; i++) s[4 + i] = kv.getUint32(i * 4, true);
  const nv = new DataView(nonce16.buffer, nonce16.byteOffset, 16);
  for (let i = 0; i < 4; i++) s[12 + i] = nv.getUint32(i * 4, true);
  const qr = (a: number, b: number, c: number, d: number): void => {
    s[a] = s[a]! + s[b]!;
    s[d] = rotl(s[d]! ^ s[a]!, 16);
    s[c] = s[c]! + s[d]!;
    s[b] = rotl(s[b]! ^ s[c]!, 12);
    s[a] = s[a]! + s[b]!;
    s[d] = rotl(s[d]! ^ s[a]!, 8);
    s[c] = s[c]! + s[d]!;
    s[b] = rotl(s[b]! ^ s[c]!, 7);
  };
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12);
    qr(1, 5, 9, 13);
    qr(2, 6, 10, 14);
    qr(3, 7, 11, 15);
    qr(0, 5, 10, 15);
    qr(1, 6, 11, 12);
    qr(2, 7, 8, 13);
    qr(3, 4, 9, 14);
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) ov.setUint32(i * 4, s[i]!, true);
  for (let i = 0; i < 4; i++) ov.setUint32(16 + i * 4, s[12 + i]!, true);
  return out;
}

function xnonce(nonce24: Uint8Array): Uint8Array {
  const n = new Uint8Array(12);
  n.set(nonce24.subarray(16, 24), 4);
  return n;
}

/** XAEAD(key, 24-byte nonce, plain, ad) → ciphertext ‖ tag. */
export function xaeadSeal(key: Uint8Array, nonce24: Uint8Array, plain: Uint8Array, ad: Uint8Array): Uint8Array {
  return aeadSealNonce(hchacha20(key, nonce24.subarray(0, 16)), xnonce(nonce24), plain, ad);
}

export function xaeadOpen(key: Uint8Array, nonce24: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | undefined {
  return aeadOpenNonce(hchacha20(key, nonce24.subarray(0, 16)), xnonce(nonce24), sealed, ad);
}

// --- X25519 ---

const b64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');

/** A private key as a KeyObject (the raw 32 bytes are the JWK `d`). */
export function x25519PrivateKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new RangeError('x25519 private key must be 32 bytes');
  return createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: b64url(raw), x: '' }, format: 'jwk' });
}

export function x25519PublicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new RangeError('x25519 public key must be 32 bytes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64url(raw) }, format: 'jwk' });
}

/** The public key of a raw private key (the scalar is clamped, as X25519 does). */
export function x25519Public(priv: Uint8Array): Uint8Array {
  const jwk = createPublicKey(x25519PrivateKey(priv)).export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(jwk.x!, 'base64url'));
}

/**
 * DH(priv, pub). Returns undefined when the result is all zeros (a low-order public key):
 * WireGuard rejects such handshakes. node:crypto throws in that case; both become undefined.
 */
export function x25519(priv: Uint8Array | KeyObject, pub: Uint8Array): Uint8Array | undefined {
  let out: Buffer;
  try {
    const privateKey = priv instanceof Uint8Array ? x25519PrivateKey(priv) : priv;
    out = diffieHellman({ privateKey, publicKey: x25519PublicKeyObject(pub) });
  } catch {
    return undefined;
  }
  let acc = 0;
  for (let i = 0; i < out.length; i++) acc |= out[i]!;
  return acc === 0 ? undefined : new Uint8Array(out);
}

/** A fresh key pair (DH_GENERATE). */
export function x25519Generate(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const privateKey = clampPrivate(new Uint8Array(randomBytes(32)));
  return { privateKey, publicKey: x25519Public(privateKey) };
}

/** Curve25519 scalar clamping, as `wg genkey` stores private keys. */
export function clampPrivate(k: Uint8Array): Uint8Array {
  k[0] = k[0]! & 248;
  k[31] = (k[31]! & 127) | 64;
  return k;
}

/** Constant-time equality of two byte ranges of the same length. */
export function equalBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): boolean {
  let d = 0;
  for (let i = 0; i < len; i++) d |= a[aOff + i]! ^ b[bOff + i]!;
  return d === 0;
}

// --- The data path AEAD ---

/**
 * ChaCha20-Poly1305 over caller buffers, WireGuard nonce (counter). `seal` writes len + 16
 * bytes (ciphertext then tag) and returns that length; `open` takes ciphertext ‖ tag and
 * returns the plaintext length or -1. In place (same buffer and offset) is allowed.
 */
export interface DataAead {
  readonly name: string;
  seal(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number;
  open(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number;
}

/** node:crypto backend: portable, allocates a cipher and a nonce per packet (see the bench). */
export class NodeAead implements DataAead {
  readonly name = 'node:crypto';
  private readonly nonce = Buffer.alloc(12);

  seal(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (srcOff + len > src.length || dstOff + len + TAG_LEN > dst.length) return -1;
    this.nonce.writeUInt32LE(counter >>> 0, 4);
    this.nonce.writeUInt32LE(Math.floor(counter / 0x100000000), 8);
    const c = createCipheriv('chacha20-poly1305', key, this.nonce, { authTagLength: TAG_LEN });
    const ct = c.update(src.subarray(srcOff, srcOff + len));
    c.final();
    dst.set(ct, dstOff);
    dst.set(c.getAuthTag(), dstOff + len);
    return len + TAG_LEN;
  }

  open(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (len < TAG_LEN || srcOff + len > src.length || dstOff + len - TAG_LEN > dst.length) return -1;
    const n = len - TAG_LEN;
    this.nonce.writeUInt32LE(counter >>> 0, 4);
    this.nonce.writeUInt32LE(Math.floor(counter / 0x100000000), 8);
    const d = createDecipheriv('chacha20-poly1305', key, this.nonce, { authTagLength: TAG_LEN });
    d.setAuthTag(src.subarray(srcOff + n, srcOff + len));
    const pt = d.update(src.subarray(srcOff, srcOff + n));
    try {
      d.final();
    } catch {
      return -1;
    }
    dst.set(pt, dstOff);
    return n;
  }
}
