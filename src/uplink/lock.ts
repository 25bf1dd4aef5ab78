/**
 * One pinhole per interface: an exclusive flock(2) on /run/pinhole/<netns>-<ifindex>.lock, held
 * for the life of the process. The kernel drops it when the process dies (even SIGKILL), so a
 * held lock means a live pinhole — and an attached program named `pinhole` without the lock is
 * stale and may be taken over. The file records the holder's pid for the error message.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, readlinkSync, writeSync } from 'node:fs';
import { getSys, PinholeError } from '../sys/index.ts';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_DIR = process.env.PINHOLE_RUN_DIR ?? '/run/pinhole';

export interface IfaceLock {
  readonly path: string;
  release(): void;
}

function netnsId(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/net'))?.[1] ?? 'net';
  } catch {
    return 'net';
  }
}

export function lockPath(ifindex: number): string {
  return `${LOCK_DIR}/${netnsId()}-${ifindex}.lock`;
}

export function lockInterface(ifname: string, ifindex: number): IfaceLock {
  mkdirSync(LOCK_DIR, { recursive: true, mode: 0o755 });
  const path = lockPath(ifindex);
  const fd = openSync(path, 'a+', 0o644);
  let held = false;
  try {
    held = getSys().flock(fd, LOCK_EX | LOCK_NB);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (!held) {
    let pid = '?';
    try {
      pid = readFileSync(path, 'utf8').trim() || '?';
    } catch {
      // unreadable: report without the pid
    }
    closeSync(fd);
    throw new PinholeError('ERR_UPLINK_BUSY', `another pinhole (pid ${pid}) is running on ${ifname}; one pinhole per interface`, {
      details: { pid, path },
    });
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`);
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      // The file stays (unlinking a lock file races with a concurrent opener); closing drops the lock.
      closeSync(fd);
    },
  };
}
