/**
 * WireGuard key files: a private (or preshared) key, base64 on one line, as `wg genkey` or
 * `pinhole wg genkey` writes it. A key file is refused unless it is a regular file owned by
 * root (uid 0) with no permission bits for group or others (mode 0600 or stricter), the rule
 * `wg` itself warns about: anyone who can read the key can impersonate this node.
 *
 * The key never leaves this function as text: it is returned as 32 bytes, and messages name the
 * file, never its content.
 *
 * Errors: ERR_WG_KEY_FILE (cannot be read, not a regular file), ERR_WG_KEY_FILE_MODE (owner or
 * mode), ERR_WG_KEY (not a WireGuard key).
 */
import { openSync, fstatSync, readSync, closeSync, constants } from 'node:fs';
import { PinholeError } from '../sys/errors.ts';
import { decodeKey } from '../tunnel/wireguard/keys.ts';

export interface KeyFileOptions {
  /** The uid the file must belong to (tests); default 0 (root). */
  owner?: number;
}

export function readKeyFile(path: string, what = 'private key', opts: KeyFileOptions = {}): Uint8Array {
  const owner = opts.owner ?? 0;
  let fd: number;
  try {
    // O_NOFOLLOW: the check applies to the file itself, not to whatever a symlink points at later.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PinholeError('ERR_WG_KEY_FILE', `${what} file ${path}: cannot open (${code ?? (err as Error).message})`, {
      cause: err,
      details: { path, errno: code },
    });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new PinholeError('ERR_WG_KEY_FILE', `${what} file ${path}: not a regular file`, { details: { path } });
    const mode = st.mode & 0o777;
    if (st.uid !== owner || (mode & 0o077) !== 0) {
      const fix = owner === 0 ? `chown root:root ${path} && chmod 600 ${path}` : `chmod 600 ${path}`;
      throw new PinholeError(
        'ERR_WG_KEY_FILE_MODE',
        `${what} file ${path} is ${st.uid !== owner ? `owned by uid ${st.uid}` : ''}${st.uid !== owner && (mode & 0o077) !== 0 ? ' and ' : ''}${(mode & 0o077) !== 0 ? `readable or writable by group/others (mode 0${mode.toString(8).padStart(3, '0')})` : ''}: refused; a key file must be owned by root and not accessible to group or others (${fix})`,
        { details: { path, uid: st.uid, mode: `0${mode.toString(8).padStart(3, '0')}` } },
      );
    }
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString('utf8');
    buf.fill(0);
    try {
      return decodeKey(text, `${what} file ${path}`);
    } catch (err) {
      throw new PinholeError('ERR_WG_KEY', `${what} file ${path} does not hold a WireGuard key (one line of 44 base64 characters)`, {
        details: { path },
      });
    }
  } finally {
    closeSync(fd);
  }
}
