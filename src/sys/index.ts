/** sys: the single place that talks to the kernel. See sys.ts for the conventions. */
import { loadLibc } from './libc.ts';
import { registerDefaultSys } from './sys.ts';

registerDefaultSys(loadLibc);

export * from './sys.ts';
export * from './errors.ts';
export * from './errno.ts';
export * from './struct.ts';
export * from './unix.ts';
