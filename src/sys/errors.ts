/**
 * Error types shared by every layer. Callers switch on `code`, never on message text.
 *
 *  - SysError: a system call failed. Keeps the syscall name, errno and symbolic code
 *    (`EBUSY`), like Node's own ErrnoException.
 *  - PinholeError: a pinhole operation failed; stable code `ERR_<AREA>_<WHAT>`, a message that
 *    says what we were doing, and the underlying cause.
 */
import { errnoName } from './errno.ts';

export class SysError extends Error {
  readonly syscall: string;
  readonly errno: number;
  readonly code: string;

  constructor(syscall: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(`${syscall}${detail ? ` (${detail})` : ''}: ${code} (errno ${errno})`);
    this.name = 'SysError';
    this.syscall = syscall;
    this.errno = errno;
    this.code = code;
  }
}

export class PinholeError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PinholeError';
    this.code = code;
    this.details = opts.details;
  }
}

/** The errno code of an error if it is (or wraps) a SysError. */
export function errnoCodeOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof SysError) return e.code;
  }
  return undefined;
}
