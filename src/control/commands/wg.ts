/**
 * `pinhole wg genkey` and `pinhole wg pubkey`: WireGuard keys in the format of `wg genkey` and
 * `wg pubkey` (base64 of 32 bytes, one per line), so keys move freely between pinhole and the
 * reference tools. `genkey` writes a new (clamped) private key to stdout; `pubkey` reads a
 * private key on stdin and writes its public key. Keys are never logged.
 */
import { PinholeError } from '../../sys/index.ts';
import { decodeKey, encodeKey, generatePrivateKey, publicKeyOf } from '../../tunnel/wireguard/keys.ts';
import type { CommandIO } from '../io.ts';

export interface WgRunOptions {
  /** Where `pubkey` reads the private key from (default: all of stdin). */
  readStdin?: () => Promise<string>;
}

async function readAll(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function run(args: string[], io: CommandIO, opts: WgRunOptions = {}): Promise<number> {
  const [sub, ...rest] = args;
  if (rest.length > 0) throw new PinholeError('ERR_CLI_USAGE', `pinhole wg ${sub} takes no arguments`);
  if (sub === 'genkey') {
    io.out(encodeKey(generatePrivateKey()));
    return 0;
  }
  if (sub === 'pubkey') {
    const text = await (opts.readStdin ?? readAll)();
    io.out(encodeKey(publicKeyOf(decodeKey(text, 'the private key on stdin'))));
    return 0;
  }
  throw new PinholeError('ERR_CLI_USAGE', sub ? `unknown wg command ${sub}` : 'missing wg command (genkey or pubkey)');
}
