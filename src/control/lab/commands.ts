/**
 * The lab behind `pinhole lab up|down|status` and `pinhole demo`: one fixed topology under a
 * STABLE name, so a later `lab down` (or `lab up`, or `demo`) finds and removes what a crashed or
 * SIGKILLed run left behind.
 *
 *   [phlab-pA0] eth0 ── wl0 [phlab-a] up0 ═══ up0 [phlab-b] wl0 ── eth0 [phlab-pB0]
 *   198.19.0.1          (pinhole)  198.18.0.1   198.18.0.2  (pinhole)         198.19.0.2
 *   2001:db8:100::1                2001:db8::1  2001:db8::2                   2001:db8:100::2
 *
 * Both nodes run pinhole (`run --config`), joined by one VXLAN connection `pods` (VNI 100, IPv4
 * underlay). Uplink and workload veths have 2 queues each, so pinhole serves both with AF_XDP.
 * Address plan, MACs and MTUs: topology.ts.
 *
 * Files (everything the lab writes, all removed by `lab down`):
 *   /run/pinhole/lab/node-{a,b}.yaml   the nodes' config files (what an operator would write)
 *   /run/pinhole/lab/node-{a,b}.out    a daemon's stdout (JSON event lines), .log its stderr
 *   /run/pinhole/lab/demo.pid          the running demo
 *   /run/pinhole/lab/lab.json          what `lab up` built (the plan and the files)
 *   /run/pinhole/demo/node-{a,b}.sock  the nodes' API sockets (created by the daemons)
 *
 * `labDown` removes, in order: a running demo (SIGTERM, so it tears down itself; SIGKILL after a
 * grace period), every process in the lab's namespaces (pinhole daemons, ping, iperf3: SIGTERM so
 * pinhole detaches cleanly, then SIGKILL), the namespaces (their veths and the XDP programs
 * attached to them go with them), anything pinned in a bpf filesystem under the lab's prefix, and
 * the files above. Each step tolerates what is already gone: it is idempotent.
 *
 * Waiting for processes that are not our children (a previous run's) polls /proc/<pid> every
 * 50 ms: Node has no event for the exit of a process it did not start.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PinholeError } from '../../sys/errors.ts';
import { readMounts } from '../../kernel/bpffs.ts';
import { buildLab, listNetns, planLab, type LabNode, type LabOptions, type LabPlan } from './topology.ts';
import { PINHOLE_BIN } from './node-daemon.ts';
import { LAB_TOOLS, requireTools } from './tools.ts';

export const LAB_PREFIX = 'phlab';
export const LAB_STATE_DIR = '/run/pinhole/lab';
export const LAB_SOCKET_DIR = '/run/pinhole/demo';
export const LAB_CONNECTION = 'pods';
export const LAB_VNI = 100;

export const LAB_OPTIONS: LabOptions = {
  prefix: LAB_PREFIX,
  underlay: 4,
  sides: { a: 'pinhole', b: 'pinhole' },
  connections: [{ vni: LAB_VNI }],
  uplinkQueues: 2,
  // As many as the uplink, so that `local.mode: afxdp` can be tried on the workload interfaces.
  workloadQueues: 2,
  // Pods as they come: TX checksum offload and TSO on (the default AF_PACKET workload
  // interfaces take them; `local.mode: afxdp` needs `ethtool -K eth0 tx off` in the pod first).
  podChecksumOffload: true,
};

/** Grace periods: a demo tearing itself down, a pinhole detaching, a SIGKILLed process exiting. */
const DEMO_GRACE_MS = 15_000;
const PROCESS_GRACE_MS = 3_000;
const KILL_WAIT_MS = 2_000;

/** The shell prefix that runs this checkout's CLI (what the printed commands use). */
export function pinholeCommand(): string {
  return `${process.execPath} ${PINHOLE_BIN}`;
}

export interface NodeFiles {
  node: 'a' | 'b';
  ns: string;
  config: string;
  socket: string;
  out: string;
  log: string;
}

export function nodeFiles(node: 'a' | 'b'): NodeFiles {
  return {
    node,
    ns: `${LAB_PREFIX}-${node}`,
    config: join(LAB_STATE_DIR, `node-${node}.yaml`),
    socket: join(LAB_SOCKET_DIR, `node-${node}.sock`),
    out: join(LAB_STATE_DIR, `node-${node}.out`),
    log: join(LAB_STATE_DIR, `node-${node}.log`),
  };
}

export const DEMO_PID_FILE = join(LAB_STATE_DIR, 'demo.pid');
const LAB_JSON = join(LAB_STATE_DIR, 'lab.json');

export function labPlan(): LabPlan {
  return planLab(LAB_OPTIONS);
}

/** A node's config file, as an operator would write it. */
export function renderConfig(node: LabNode, peer: LabNode, files: NodeFiles): string {
  const w = node.workloads[0]!;
  return [
    `# pinhole lab, node ${node.name} (namespace ${node.ns}), written by \`pinhole lab up\`.`,
    `# Run: ip netns exec ${node.ns} pinhole run --config ${files.config}`,
    `uplink: { interface: ${node.uplink}, mode: auto }`,
    `api: { socket: ${files.socket} }`,
    'log: { level: info }',
    'connections:',
    `  - name: ${LAB_CONNECTION}`,
    `    local: { interface: ${w.iface} }          # host side of pod ${w.podNs}'s veth`,
    `    vxlan: { vni: ${w.vni}, remote: ${peer.tunnelAddr} }   # node ${peer.name}`,
    '',
  ].join('\n');
}

// ---- processes -------------------------------------------------------------------------------

export interface ProcessInfo {
  pid: number;
  ns: string;
  cmd: string;
}

function run(cmd: string, args: readonly string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new PinholeError('ERR_LAB_COMMAND', `${cmd} ${args.join(' ')}: ${String(e.stderr ?? '').trim() || e.message}`, { cause: err });
  }
}

function cmdline(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(safeRead(`/proc/${pid}/status`));
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Processes inside namespace `ns` (`ip netns pids`), with their command lines. */
export function processesIn(ns: string): ProcessInfo[] {
  let text = '';
  try {
    text = run('ip', ['netns', 'pids', ns]);
  } catch {
    return []; // namespace gone
  }
  const out: ProcessInfo[] = [];
  for (const p of text.split(/\s+/).filter(Boolean)) {
    const pid = Number(p);
    const cmd = cmdline(pid);
    if (cmd !== undefined) out.push({ pid, ns, cmd });
  }
  return out;
}

/** Whether a command line is a pinhole CLI process. */
export function isPinhole(cmd: string): boolean {
  return /(^|[\s/])pinhole(\.js)?(\s|$)/.test(cmd);
}

/** The running demo's pid from the pid file, if that process is alive and is a demo. */
export function runningDemo(exceptPid?: number): number | undefined {
  const pid = Number.parseInt(safeRead(DEMO_PID_FILE).trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0 || pid === exceptPid || !alive(pid)) return undefined;
  const cmd = cmdline(pid) ?? '';
  return isPinhole(cmd) && /\sdemo(\s|$)/.test(cmd) ? pid : undefined;
}

/** The lab's namespaces that exist now (any `phlab-*`, also from a plan an older version made). */
export function labNamespaces(): string[] {
  return listNetns().filter((n) => n.startsWith(`${LAB_PREFIX}-`));
}

async function waitGone(pids: readonly number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  let left = pids.filter(alive);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(alive);
  }
  return left;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone meanwhile
  }
}

// ---- XDP programs and pins -------------------------------------------------------------------

export interface LabXdpProgram {
  ns: string;
  iface: string;
  id: number;
  name?: string;
}

interface IpLink {
  ifname: string;
  operstate?: string;
  mtu?: number;
  address?: string;
  link_type?: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
  xdp?: XdpJson & { attached?: XdpJson[] };
}

interface XdpJson {
  mode?: number;
  prog?: { id: number; name?: string };
}

function ipLinks(ns: string): IpLink[] {
  try {
    return JSON.parse(run('ip', ['-j', '-d', '-n', ns, 'addr', 'show'])) as IpLink[];
  } catch {
    return [];
  }
}

function xdpOf(ns: string, l: IpLink): LabXdpProgram[] {
  const out: LabXdpProgram[] = [];
  // One program shows up both as `prog` and in `attached` (iproute2 prints both forms).
  const add = (x: XdpJson | undefined): void => {
    if (x?.prog && typeof x.prog.id === 'number' && !out.some((y) => y.id === x.prog!.id)) {
      out.push({ ns, iface: l.ifname, id: x.prog.id, ...(x.prog.name ? { name: x.prog.name } : {}) });
    }
  };
  add(l.xdp);
  for (const a of l.xdp?.attached ?? []) add(a);
  return out;
}

/** Pinned objects that belong to the lab: `<bpffs>/phlab*` and `<bpffs>/pinhole/phlab*`. */
export function labPins(): string[] {
  const out: string[] = [];
  for (const m of readMounts().filter((x) => x.fsType === 'bpf')) {
    for (const dir of [m.mountPoint, join(m.mountPoint, 'pinhole')]) {
      let names: string[] = [];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const n of names) if (n.startsWith(LAB_PREFIX)) out.push(join(dir, n));
    }
  }
  return [...new Set(out)];
}

// ---- down ------------------------------------------------------------------------------------

export interface LabDownResult {
  /** A demo that was still running (stopped first). */
  demo: number | null;
  /** Processes ended in the lab's namespaces (and how). */
  processes: (ProcessInfo & { signal: 'SIGTERM' | 'SIGKILL' })[];
  /** XDP programs that were attached in the lab (gone with its veths). */
  xdp: LabXdpProgram[];
  namespaces: string[];
  pins: string[];
  files: string[];
  elapsedMs: number;
}

/**
 * Removes the lab and everything a run left (see the file comment). Idempotent. `exceptPid`: a
 * demo process that must not stop itself (the demo cleaning up before it starts).
 */
export async function labDown(o: { exceptPid?: number } = {}): Promise<LabDownResult> {
  const t0 = Date.now();
  const result: LabDownResult = { demo: null, processes: [], xdp: [], namespaces: [], pins: [], files: [], elapsedMs: 0 };

  const demo = runningDemo(o.exceptPid);
  if (demo !== undefined) {
    result.demo = demo;
    signal(demo, 'SIGTERM');
    if ((await waitGone([demo], DEMO_GRACE_MS)).length > 0) {
      signal(demo, 'SIGKILL');
      await waitGone([demo], KILL_WAIT_MS);
    }
  }

  const namespaces = labNamespaces();
  for (const ns of namespaces) for (const l of ipLinks(ns)) result.xdp.push(...xdpOf(ns, l));

  const procs = namespaces.flatMap(processesIn).filter((p) => p.pid !== process.pid && p.pid !== o.exceptPid);
  for (const p of procs) signal(p.pid, 'SIGTERM');
  const stubborn = new Set(
    await waitGone(
      procs.map((p) => p.pid),
      PROCESS_GRACE_MS,
    ),
  );
  for (const p of procs) {
    if (stubborn.has(p.pid)) signal(p.pid, 'SIGKILL');
    result.processes.push({ ...p, signal: stubborn.has(p.pid) ? 'SIGKILL' : 'SIGTERM' });
  }
  if (stubborn.size > 0) await waitGone([...stubborn], KILL_WAIT_MS);

  for (const ns of namespaces) {
    // Anything that entered meanwhile (a straggler of a dying run) is killed outright.
    for (const p of processesIn(ns)) if (p.pid !== process.pid) signal(p.pid, 'SIGKILL');
    try {
      run('ip', ['netns', 'del', ns]);
      result.namespaces.push(ns);
    } catch {
      if (listNetns().includes(ns)) throw new PinholeError('ERR_LAB_DOWN', `could not delete namespace ${ns}`);
    }
  }

  for (const pin of labPins()) {
    rmSync(pin, { recursive: true, force: true });
    result.pins.push(pin);
  }

  for (const dir of [LAB_STATE_DIR, LAB_SOCKET_DIR]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) result.files.push(join(dir, f));
    rmSync(dir, { recursive: true, force: true });
    result.files.push(dir);
  }
  // The parent too, when nothing else lives there (a real daemon's default socket would).
  try {
    rmdirSync('/run/pinhole');
  } catch {
    // not empty, or absent
  }
  result.elapsedMs = Date.now() - t0;
  return result;
}

// ---- up --------------------------------------------------------------------------------------

export interface LabUpResult {
  plan: LabPlan;
  nodes: NodeFiles[];
  /** What a leftover lab left and `up` removed first. */
  replaced: LabDownResult | null;
  elapsedMs: number;
}

/** Why the lab cannot be rebuilt now (a demo or a pinhole runs in it), or undefined. */
export function labBusy(exceptPid?: number): string | undefined {
  const demo = runningDemo(exceptPid);
  if (demo !== undefined) return `a demo is running (pid ${demo})`;
  const nodes = [nodeFiles('a').ns, nodeFiles('b').ns];
  const running = nodes.flatMap(processesIn).filter((p) => isPinhole(p.cmd));
  if (running.length > 0) return `pinhole runs in the lab (${running.map((p) => `pid ${p.pid} in ${p.ns}`).join(', ')})`;
  return undefined;
}

/**
 * Builds the lab and writes the nodes' config files. A lab left by an earlier run is removed
 * first, unless a demo or a pinhole still runs in it (ERR_LAB_BUSY: `lab down` first). Without
 * iproute2's `ip`, nothing is touched (ERR_LAB_TOOLS_MISSING, tools.ts).
 */
export async function labUp(o: { exceptPid?: number } = {}): Promise<LabUpResult> {
  const t0 = Date.now();
  requireTools('pinhole lab up', LAB_TOOLS);
  const busy = labBusy(o.exceptPid);
  if (busy) throw new PinholeError('ERR_LAB_BUSY', `the lab is in use: ${busy}; run \`pinhole lab down\` first`);
  let replaced: LabDownResult | null = null;
  if (labNamespaces().length > 0 || existsSync(LAB_STATE_DIR) || existsSync(LAB_SOCKET_DIR)) {
    replaced = await labDown(o.exceptPid === undefined ? {} : { exceptPid: o.exceptPid });
  }
  const lab = buildLab(LAB_OPTIONS);
  try {
    mkdirSync(LAB_STATE_DIR, { recursive: true, mode: 0o755 });
    const nodes = [nodeFiles('a'), nodeFiles('b')];
    writeFileSync(nodes[0]!.config, renderConfig(lab.a, lab.b, nodes[0]!));
    writeFileSync(nodes[1]!.config, renderConfig(lab.b, lab.a, nodes[1]!));
    const plan = lab.describe();
    writeFileSync(LAB_JSON, JSON.stringify({ plan, nodes }, null, 2) + '\n');
    return { plan, nodes, replaced, elapsedMs: Date.now() - t0 };
  } catch (err) {
    lab.close();
    throw err;
  }
}

// ---- status ----------------------------------------------------------------------------------

export interface LabInterface {
  name: string;
  state: string;
  mtu: number | null;
  mac: string | null;
  /** `addr/len`, global scope only. */
  addresses: string[];
  xdp: { id: number; name?: string }[];
}

export interface LabNamespaceStatus {
  name: string;
  /** 'node a', 'pod A0', or 'stray' (a `phlab-*` namespace not in the plan). */
  role: string;
  present: boolean;
  interfaces: LabInterface[];
  processes: ProcessInfo[];
}

export interface LabNodeStatus {
  node: 'a' | 'b';
  ns: string;
  config: string;
  configExists: boolean;
  socket: string;
  socketExists: boolean;
  log: string;
  /** pinhole processes running in the node's namespace. */
  pinhole: ProcessInfo[];
}

export interface LabStatus {
  prefix: string;
  /** Every planned namespace exists. */
  up: boolean;
  /** Some lab namespace or file exists (a lab, or what a crash left). */
  present: boolean;
  stateDir: string;
  namespaces: LabNamespaceStatus[];
  nodes: LabNodeStatus[];
  demo: { pid: number } | null;
  pins: string[];
}

export function labStatus(): LabStatus {
  const plan = labPlan();
  const existing = new Set(labNamespaces());
  const roles = new Map<string, string>([
    [plan.a.ns, 'node a'],
    [plan.b.ns, 'node b'],
    ...plan.a.workloads.map((w): [string, string] => [w.podNs, `pod A${w.index}`]),
    ...plan.b.workloads.map((w): [string, string] => [w.podNs, `pod B${w.index}`]),
  ]);
  const names = [...plan.namespaces, ...[...existing].filter((n) => !roles.has(n)).sort()];
  const namespaces = names.map((name): LabNamespaceStatus => {
    const present = existing.has(name);
    const links = present ? ipLinks(name) : [];
    return {
      name,
      role: roles.get(name) ?? 'stray',
      present,
      interfaces: links
        .filter((l) => l.ifname !== 'lo')
        .map((l) => ({
          name: l.ifname,
          state: l.operstate ?? 'UNKNOWN',
          mtu: l.mtu ?? null,
          mac: l.address ?? null,
          addresses: (l.addr_info ?? [])
            .filter((a) => a.scope === undefined || a.scope === 'global')
            .map((a) => `${a.local}/${a.prefixlen}`),
          xdp: xdpOf(name, l).map((x) => ({ id: x.id, ...(x.name ? { name: x.name } : {}) })),
        })),
      processes: present ? processesIn(name) : [],
    };
  });
  const nodes = (['a', 'b'] as const).map((n): LabNodeStatus => {
    const f = nodeFiles(n);
    const ns = namespaces.find((x) => x.name === f.ns);
    return {
      node: n,
      ns: f.ns,
      config: f.config,
      configExists: existsSync(f.config),
      socket: f.socket,
      socketExists: existsSync(f.socket),
      log: f.log,
      pinhole: (ns?.processes ?? []).filter((p) => isPinhole(p.cmd)),
    };
  });
  const demo = runningDemo();
  const pins = labPins();
  const up = plan.namespaces.every((n) => existing.has(n));
  return {
    prefix: LAB_PREFIX,
    up,
    present: existing.size > 0 || existsSync(LAB_STATE_DIR) || existsSync(LAB_SOCKET_DIR) || pins.length > 0,
    stateDir: LAB_STATE_DIR,
    namespaces,
    nodes,
    demo: demo === undefined ? null : { pid: demo },
    pins,
  };
}
