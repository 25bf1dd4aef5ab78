/**
 * libsodium's ChaCha20-Poly1305 (IETF, RFC 8439) and XChaCha20-Poly1305 through koffi: the
 * WireGuard data path's AEAD, chosen by bench/wireguard-aead.ts (one FFI call per packet, no
 * allocation, in place). Loaded lazily on first use from the system library `libsodium.so.23`
 * (Debian: libsodium23); a missing library is ERR_SODIUM_MISSING with the package to install.
 *
 * No allocation per packet: pointers are passed as plain numbers (`uintptr_t`), computed from
 * the address of the caller's buffer, which is looked up once and cached (two entries: source
 * and destination; a worker reuses one packet buffer, so the cache always hits). The key and
 * the nonce are copied into a fixed scratch area whose address is known. Buffers handed to
 * seal/open must be off-heap (any ArrayBuffer larger than 64 bytes, a SharedArrayBuffer, or
 * mmap'd memory): V8 never moves those. Small on-heap typed arrays are copied into scratch
 * space instead (see `stable`).
 *
 * Layout of a sealed message: ciphertext (len bytes) followed by the 16-byte Poly1305 tag —
 * the detached calls write the tag where WireGuard wants it, and are measurably faster than the
 * combined ones through the FFI.
 */
import koffi from 'koffi';
import { PinholeError } from './errors.ts';

type Fn = (...args: unknown[]) => number;

interface SodiumLib {
  encD: Fn;
  decD: Fn;
  xenc: Fn;
  xdec: Fn;
}

let lib: SodiumLib | undefined;

function load(): SodiumLib {
  if (lib) return lib;
  let so: ReturnType<typeof koffi.load>;
  try {
    so = koffi.load('libsodium.so.23');
  } catch (err) {
    throw new PinholeError(
      'ERR_SODIUM_MISSING',
      'cannot load libsodium.so.23 for the WireGuard data path: install the libsodium23 package (apt-get install -y libsodium23)',
      { cause: err },
    );
  }
  const init = so.func('int sodium_init(void)') as Fn;
  if (init() < 0) throw new PinholeError('ERR_SODIUM_INIT', 'sodium_init() failed');
  lib = {
    encD: so.func(
      'int crypto_aead_chacha20poly1305_ietf_encrypt_detached(uintptr_t c, uintptr_t mac, uintptr_t maclen, uintptr_t m, unsigned long long mlen, uintptr_t ad, unsigned long long adlen, uintptr_t nsec, uintptr_t npub, uintptr_t k)',
    ) as Fn,
    decD: so.func(
      'int crypto_aead_chacha20poly1305_ietf_decrypt_detached(uintptr_t m, uintptr_t nsec, uintptr_t c, unsigned long long clen, uintptr_t mac, uintptr_t ad, unsigned long long adlen, uintptr_t npub, uintptr_t k)',
    ) as Fn,
    xenc: so.func(
      'int crypto_aead_xchacha20poly1305_ietf_encrypt(_Out_ uint8_t *c, uintptr_t clen, const uint8_t *m, unsigned long long mlen, const uint8_t *ad, unsigned long long adlen, uintptr_t nsec, const uint8_t *npub, const uint8_t *k)',
    ) as Fn,
    xdec: so.func(
      'int crypto_aead_xchacha20poly1305_ietf_decrypt(_Out_ uint8_t *m, uintptr_t mlen, uintptr_t nsec, const uint8_t *c, unsigned long long clen, const uint8_t *ad, unsigned long long adlen, const uint8_t *npub, const uint8_t *k)',
    ) as Fn,
  };
  return lib;
}

/** Whether libsodium can be loaded here (for probes and benchmarks; never throws). */
export function sodiumAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

/** Scratch layout: key at 0 (32 bytes), nonce at 32 (12 bytes), small-buffer copies from 64. */
const KEY = 0;
const NONCE = 32;
const BOUNCE = 64;
const BOUNCE_LEN = 128;

/**
 * ChaCha20-Poly1305 (IETF) with WireGuard's nonce (4 zero bytes, then the 64-bit little-endian
 * counter) over caller buffers. One instance per worker thread.
 */
export class SodiumAead {
  readonly name = 'libsodium (koffi)';
  private readonly lib: SodiumLib;
  private readonly scratch = new Uint8Array(new ArrayBuffer(BOUNCE + 2 * BOUNCE_LEN));
  private readonly scratchView = new DataView(this.scratch.buffer);
  private readonly scratchAddr: number;
  private srcBuf: Uint8Array | undefined;
  private srcAddr = 0;
  private dstBuf: Uint8Array | undefined;
  private dstAddr = 0;

  constructor() {
    this.lib = load();
    this.scratchAddr = Number(koffi.address(this.scratch));
  }

  /**
   * Encrypts `src[srcOff, srcOff + len)` to `dst[dstOff, dstOff + len + 16)` (ciphertext, then
   * tag). Source and destination may be the same bytes (in place), not otherwise overlapping.
   * Returns the sealed length.
   */
  seal(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (srcOff < 0 || dstOff < 0 || srcOff + len > src.length || dstOff + len + 16 > dst.length) return -1;
    this.setKeyNonce(key, counter);
    const s = this.addrOf(src, true);
    const d = this.addrOf(dst, false);
    const base = this.scratchAddr;
    if (s < 0 || d < 0) return this.bounce(true, src, srcOff, len, dst, dstOff);
    this.lib.encD(d + dstOff, d + dstOff + len, 0, s + srcOff, len, 0, 0, 0, base + NONCE, base + KEY);
    return len + 16;
  }

  /**
   * Decrypts and authenticates `src[srcOff, srcOff + len)` (ciphertext then tag) to
   * `dst[dstOff, dstOff + len - 16)`. Returns the plaintext length, or -1 when the tag does not
   * verify (nothing useful is written then).
   */
  open(key: Uint8Array, counter: number, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (len < 16 || srcOff < 0 || dstOff < 0 || srcOff + len > src.length || dstOff + len - 16 > dst.length) return -1;
    this.setKeyNonce(key, counter);
    const s = this.addrOf(src, true);
    const d = this.addrOf(dst, false);
    const base = this.scratchAddr;
    if (s < 0 || d < 0) return this.bounce(false, src, srcOff, len, dst, dstOff);
    const n = len - 16;
    const r = this.lib.decD(d + dstOff, 0, s + srcOff, n, s + srcOff + n, 0, 0, base + NONCE, base + KEY);
    return r === 0 ? n : -1;
  }

  private setKeyNonce(key: Uint8Array, counter: number): void {
    this.scratch.set(key, KEY);
    const v = this.scratchView;
    v.setUint32(NONCE, 0, true);
    v.setUint32(NONCE + 4, counter >>> 0, true);
    v.setUint32(NONCE + 8, Math.floor(counter / 0x100000000), true);
  }

  /** Address of the start of `buf`'s view, or -1 when it may move (a small on-heap array). */
  private addrOf(buf: Uint8Array, src: boolean): number {
    if (src ? buf === this.srcBuf : buf === this.dstBuf) return src ? this.srcAddr : this.dstAddr;
    if (buf.buffer.byteLength <= 64 && !(buf.buffer instanceof SharedArrayBuffer)) return -1;
    const a = Number(koffi.address(buf));
    if (src) {
      this.srcBuf = buf;
      this.srcAddr = a;
    } else {
      this.dstBuf = buf;
      this.dstAddr = a;
    }
    return a;
  }

  /** Small on-heap buffers: copy through the scratch area (rare; tests and tiny packets). */
  private bounce(seal: boolean, src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number): number {
    if (len > BOUNCE_LEN - 16) return -1;
    const base = this.scratchAddr;
    const inAt = BOUNCE;
    const outAt = BOUNCE + BOUNCE_LEN;
    this.scratch.set(src.subarray(srcOff, srcOff + len), inAt);
    if (seal) {
      this.lib.encD(base + outAt, base + outAt + len, 0, base + inAt, len, 0, 0, 0, base + NONCE, base + KEY);
      dst.set(this.scratch.subarray(outAt, outAt + len + 16), dstOff);
      return len + 16;
    }
    const n = len - 16;
    if (this.lib.decD(base + outAt, 0, base + inAt, n, base + inAt + n, 0, 0, base + NONCE, base + KEY) !== 0) return -1;
    dst.set(this.scratch.subarray(outAt, outAt + n), dstOff);
    return n;
  }
}

/** XChaCha20-Poly1305 (libsodium), for cross-checking the cookie AEAD in tests. */
export function sodiumXSeal(key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, ad: Uint8Array): Uint8Array {
  const l = load();
  const out = new Uint8Array(plain.length + 16);
  l.xenc(out, 0, plain, plain.length, ad, ad.length, 0, nonce, key);
  return out;
}

export function sodiumXOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Uint8Array | undefined {
  const l = load();
  if (sealed.length < 16) return undefined;
  const out = new Uint8Array(sealed.length - 16);
  return l.xdec(out, 0, 0, sealed, sealed.length, ad, ad.length, nonce, key) === 0 ? out : undefined;
}
