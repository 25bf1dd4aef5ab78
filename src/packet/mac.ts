/**
 * Ethernet (IEEE 802) MAC addresses: "02:00:5e:10:00:01" (or '-' separated) text to 6 bytes and back.
 * Bad input throws PacketError with code ERR_INVALID_MAC.
 */
import { PacketError } from './errors.ts';

export function parseMac(text: string): Uint8Array {
  const out = new Uint8Array(6);
  const ok = typeof text === 'string' && /^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(text);
  if (!ok) throw new PacketError('ERR_INVALID_MAC', `parse ${JSON.stringify(text)} as a MAC address`);
  for (let i = 0; i < 6; i++) out[i] = parseInt(text.slice(i * 3, i * 3 + 2), 16);
  return out;
}

export function formatMac(bytes: Uint8Array, off = 0): string {
  if (bytes.length < off + 6) {
    throw new PacketError('ERR_INVALID_MAC', `format a ${bytes.length}-byte value as a MAC address`);
  }
  let out = '';
  for (let i = 0; i < 6; i++) out += (i ? ':' : '') + bytes[off + i].toString(16).padStart(2, '0');
  return out;
}
