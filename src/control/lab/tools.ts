/**
 * The programs the lab and the demo run, checked before anything is built: on a fresh machine
 * without iperf3 the demo would otherwise build the lab, start both daemons and only then fail
 * (ERR_LAB_TRAFFIC: exec of iperf3 failed). One error instead names every missing program and the
 * Debian/Ubuntu packages that hold them, and nothing is touched.
 *
 *   ip       iproute2       namespaces, veths, addresses (`ip netns exec` runs everything else)
 *   ping     iputils-ping   the tunnel check and the latency rows (`-4`/`-6`, `-i 0.05`: iputils' ping)
 *   iperf3   iperf3         the TCP and UDP throughput rows and the nodes' own TCP stream
 *
 * A program counts as present when an executable file of that name is in a directory of PATH,
 * the lookup `ip netns exec` and Node's spawn make themselves.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { PinholeError } from '../../sys/errors.ts';

export interface Tool {
  /** The program name looked up in PATH. */
  name: string;
  /** The Debian/Ubuntu package that provides it. */
  debian: string;
  /** What it is used for (in the error message). */
  purpose: string;
}

export const TOOL_IP: Tool = { name: 'ip', debian: 'iproute2', purpose: 'network namespaces and veths' };
export const TOOL_PING: Tool = { name: 'ping', debian: 'iputils-ping', purpose: 'ping between the pods and the nodes' };
export const TOOL_IPERF3: Tool = { name: 'iperf3', debian: 'iperf3', purpose: 'TCP and UDP throughput' };

/** What `pinhole lab up` runs. */
export const LAB_TOOLS: readonly Tool[] = [TOOL_IP];
/** What `pinhole demo` runs. */
export const DEMO_TOOLS: readonly Tool[] = [TOOL_IP, TOOL_PING, TOOL_IPERF3];

/** Whether `name` is an executable file in one of PATH's directories. */
export function onPath(name: string, path: string | undefined = process.env.PATH): boolean {
  for (const dir of (path ?? '').split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** The tools of `tools` not found on `path`. */
export function missingTools(tools: readonly Tool[], path: string | undefined = process.env.PATH): Tool[] {
  return tools.filter((t) => !onPath(t.name, path));
}

/**
 * Throws ERR_LAB_TOOLS_MISSING when a tool is not installed: the message names each missing
 * program, what it is for and its package, and ends with the apt-get command for all of them;
 * `details.missing` and `details.packages` list them for callers.
 */
export function requireTools(what: string, tools: readonly Tool[], path: string | undefined = process.env.PATH): void {
  const missing = missingTools(tools, path);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((t) => t.debian))];
  throw new PinholeError(
    'ERR_LAB_TOOLS_MISSING',
    `${what} needs programs that are not installed (not in PATH): ${missing
      .map((t) => `${t.name} (${t.purpose}; package ${t.debian})`)
      .join(', ')}. On Debian/Ubuntu: sudo apt-get install ${packages.join(' ')}. Nothing was changed.`,
    { details: { missing: missing.map((t) => t.name), packages } },
  );
}
