/**
 * WireGuard keys as `wg` writes them: 32 bytes in standard base64 (44 characters with one '='
 * of padding). Private keys are stored clamped (`wg genkey` clamps; X25519 clamps anyway, so a
 * public key is the same either way).
 */
import { randomBytes } from 'node:crypto';
import { PinholeError } from '../../sys/errors.ts';
import { clampPrivate, x25519Public } from './crypto.ts';

export function encodeKey(k: Uint8Array): string {
  if (k.length !== 32) throw new RangeError('a WireGuard key is 32 bytes');
  return Buffer.from(k.buffer, k.byteOffset, 32).toString('base64');
}

/** Parses a base64 key (surrounding whitespace ignored); ERR_WG_KEY when it is not 32 bytes. */
export function decodeKey(s: string, what = 'key'): Uint8Array {
  const t = s.trim();
  if (!/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(t))
    throw new PinholeError('ERR_WG_KEY', `${what} is not a WireGuard key (44 characters of base64 for 32 bytes)`);
  return new Uint8Array(Buffer.from(t, 'base64'));
}

export function generatePrivateKey(): Uint8Array {
  return clampPrivate(new Uint8Array(randomBytes(32)));
}

export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return x25519Public(privateKey);
}
