/**
 * Traffic tools run inside lab namespaces — ping and iperf3 — asynchronously, with their output
 * parsed into numbers. Used by `pinhole demo`, and by tests and benchmarks that want the same
 * measurements. Nothing here is a hot path: one process per measurement.
 *
 * Every process is `ip netns exec NS tool ...` (iproute2 enters the namespace and execs the tool,
 * so the child's pid is the tool's). A run has a deadline and may be aborted (AbortSignal): the
 * tool is then killed and the promise rejects with ERR_LAB_TIMEOUT / ERR_LAB_ABORTED, so a demo
 * interrupted by Ctrl-C never waits on a tool (an iperf3 client past its deadline gets 3 s to
 * say how far it got: iperf below).
 *
 * Parsing:
 *  - ping (iputils): the summary `N packets transmitted, M received` and
 *    `rtt min/avg/max/mdev = a/b/c/d ms` (absent when nothing came back);
 *  - iperf3 -J: `end.sum_sent` (bytes, bits_per_second, TCP retransmits) and `end.sum_received`
 *    (what the server got; UDP: lost_packets, packets, lost_percent, jitter_ms). A client stopped
 *    with SIGINT still prints its JSON, with `error` "interrupt - ..." and an empty sum_received:
 *    `stop()` on a stream started with `startIperf` relies on that.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { PinholeError } from '../../sys/errors.ts';

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A tool running inside a namespace. */
export interface NsProcess {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  /** Everything printed so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited (never rejects). */
  readonly done: Promise<ProcResult>;
  /** Whether it has exited. */
  exited(): boolean;
  /** Sends a signal unless it has exited. */
  kill(signal?: NodeJS.Signals): void;
}

/** Every tool process started here and still running: `killAllTools()` ends them (teardown). */
const running = new Set<NsProcess>();

/**
 * Starts `cmd args` inside namespace `ns`, stdout and stderr collected; with `cpu`, on that CPU
 * only (taskset).
 */
export function spawnIn(ns: string, cmd: string, args: readonly string[], cpu?: number): NsProcess {
  const pin = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  const child = spawn('ip', ['netns', 'exec', ns, ...pin, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let isDone = false;
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<ProcResult>((resolve) => {
    // 'close' (not 'exit'): every byte of output has been read by then.
    child.once('close', (code, signal) => {
      isDone = true;
      running.delete(p);
      resolve({ code, signal, stdout: out, stderr: err });
    });
    child.once('error', (e) => {
      isDone = true;
      running.delete(p);
      resolve({ code: null, signal: null, stdout: out, stderr: err + String(e.message) });
    });
  });
  const p: NsProcess = {
    child,
    pid: child.pid,
    stdout: () => out,
    stderr: () => err,
    done,
    exited: () => isDone,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!isDone && child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  running.add(p);
  return p;
}

/** SIGKILLs every tool started by spawnIn that is still running. */
export function killAllTools(): void {
  for (const p of [...running]) p.kill('SIGKILL');
}

export interface WaitOptions {
  /** Deadline for the whole run. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Waits for `p` to exit within the deadline; on timeout or abort kills it and rejects
 * (ERR_LAB_TIMEOUT / ERR_LAB_ABORTED, naming `what`).
 */
export function finish(p: NsProcess, what: string, o: WaitOptions): Promise<ProcResult> {
  return settleWithin(p.done, what, o, () => p.kill('SIGKILL'));
}

/** Races `promise` against a deadline and an abort signal; `onFail` runs before rejecting. */
export function settleWithin<T>(promise: Promise<T>, what: string, o: WaitOptions, onFail: () => void = () => undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const fail = (err: PinholeError): void => {
      cleanup();
      onFail();
      reject(err);
    };
    const onAbort = (): void => fail(new PinholeError('ERR_LAB_ABORTED', `${what}: interrupted`));
    const timer = setTimeout(() => fail(new PinholeError('ERR_LAB_TIMEOUT', `${what}: no result within ${o.timeoutMs} ms`)), o.timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    };
    if (o.signal?.aborted) {
      onAbort();
      return;
    }
    o.signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (e: unknown) => {
        cleanup();
        reject(e);
      },
    );
  });
}

function trafficError(what: string, r: ProcResult, detail?: string): PinholeError {
  const text = (detail ?? (r.stderr.trim() || r.stdout.trim())).slice(-1000);
  const how = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  return new PinholeError('ERR_LAB_TRAFFIC', `${what}: ${how}${text ? `: ${text}` : ''}`, { details: { ...r } });
}

// ---- ping ------------------------------------------------------------------------------------

export interface PingResult {
  target: string;
  sent: number;
  received: number;
  /** 0..100. */
  lossPct: number;
  /** Round-trip times in milliseconds; absent when no reply came back. */
  rttMs?: { min: number; avg: number; max: number; mdev: number };
}

/** Parses iputils ping's summary; undefined when there is none. */
export function parsePing(target: string, text: string): PingResult | undefined {
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(text);
  if (!m) return undefined;
  const sent = Number(m[1]);
  const received = Number(m[2]);
  const r: PingResult = { target, sent, received, lossPct: sent > 0 ? ((sent - received) * 100) / sent : 100 };
  const t = /(?:rtt|round-trip) min\/avg\/max\/(?:mdev|stddev) = ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(text);
  if (t) r.rttMs = { min: Number(t[1]), avg: Number(t[2]), max: Number(t[3]), mdev: Number(t[4]) };
  return r;
}

export interface PingOptions {
  /** Echo requests to send (ping: -c). Default 20. */
  count?: number;
  /** Seconds between requests (ping: -i; below 0.2 needs root). Default 0.05. */
  intervalS?: number;
  /** Seconds to wait for the last reply (ping: -W). Default 1. */
  waitS?: number;
}

function pingArgs(target: string, o: { intervalS: number; waitS: number; count?: number }): string[] {
  return [
    target.includes(':') ? '-6' : '-4',
    '-n',
    '-q',
    ...(o.count === undefined ? [] : ['-c', String(o.count)]),
    '-i',
    String(o.intervalS),
    '-W',
    String(o.waitS),
    target,
  ];
}

/** Pings `target` from namespace `ns` `count` times and returns the summary (losses are data, not errors). */
export async function ping(ns: string, target: string, o: PingOptions & Partial<WaitOptions> = {}): Promise<PingResult> {
  const count = o.count ?? 20;
  const intervalS = o.intervalS ?? 0.05;
  const waitS = o.waitS ?? 1;
  const what = `ping ${target} from ${ns}`;
  const p = spawnIn(ns, 'ping', pingArgs(target, { count, intervalS, waitS }));
  const timeoutMs = o.timeoutMs ?? Math.ceil((count * intervalS + waitS) * 1000) + 5000;
  const r = await finish(p, what, { timeoutMs, ...(o.signal ? { signal: o.signal } : {}) });
  const parsed = parsePing(target, r.stdout);
  if (!parsed) throw trafficError(what, r);
  return parsed;
}

export interface PingStream {
  /** Stops the stream (SIGINT: ping prints its summary) and returns the summary. */
  stop(timeoutMs?: number): Promise<PingResult>;
  kill(): void;
}

/** Pings `target` from `ns` every `intervalS` seconds until stopped. */
export function startPing(ns: string, target: string, o: { intervalS?: number; waitS?: number } = {}): PingStream {
  const p = spawnIn(ns, 'ping', pingArgs(target, { intervalS: o.intervalS ?? 0.05, waitS: o.waitS ?? 1 }));
  const what = `ping ${target} from ${ns}`;
  return {
    kill: () => p.kill('SIGKILL'),
    async stop(timeoutMs = 5000) {
      p.kill('SIGINT');
      const r = await finish(p, what, { timeoutMs });
      const parsed = parsePing(target, r.stdout);
      if (!parsed) throw trafficError(what, r);
      return parsed;
    },
  };
}

// ---- iperf3 ----------------------------------------------------------------------------------

export interface IperfServer {
  port: number;
  /** Ends the server. */
  stop(): void;
  /** What the server printed so far (its text log: --forceflush), for a failure's message. */
  output(): string;
}

/**
 * Starts `iperf3 -s` in `ns` (serving test after test until stopped) and resolves once it listens
 * (it prints "Server listening"; --forceflush makes it say so at once on a pipe).
 */
export async function startIperfServer(ns: string, o: { port?: number; bind?: string; cpu?: number } & WaitOptions): Promise<IperfServer> {
  const port = o.port ?? 5201;
  const p = spawnIn(ns, 'iperf3', ['-s', '-p', String(port), ...(o.bind ? ['-B', o.bind] : []), '--forceflush'], o.cpu);
  const what = `iperf3 server in ${ns}`;
  const listening = new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (/listening/i.test(p.stdout())) {
        p.child.stdout!.off('data', check);
        resolve();
      }
    };
    p.child.stdout!.on('data', check);
    check();
    void p.done.then((r) => reject(trafficError(`${what} exited before listening`, r)));
  });
  await settleWithin(listening, what, o, () => p.kill('SIGKILL'));
  return { port, stop: () => p.kill('SIGKILL'), output: () => p.stdout() + p.stderr() };
}

export interface IperfOptions {
  /** The server's address. */
  server: string;
  port?: number;
  /** Test length (iperf3: -t). */
  seconds: number;
  udp?: boolean;
  /** Target bitrate (iperf3: -b), e.g. '500M'. UDP default in iperf3 is 1M: set it. */
  bitrate?: string;
  /** Datagram / write length in bytes (iperf3: -l). */
  length?: number;
  /** The server sends, the client receives (iperf3: -R). */
  reverse?: boolean;
  /**
   * Seconds at the start left out of the results (iperf3: -O, past TCP slow start), run on top
   * of `seconds`.
   */
  omit?: number;
  /** The CPU the client runs on (taskset); absent: any. */
  cpu?: number;
}

export interface IperfResult {
  protocol: 'tcp' | 'udp';
  seconds: number;
  sentBytes: number;
  sentBps: number;
  /** What the server received; absent when the client was interrupted. */
  receivedBps?: number;
  /** TCP. */
  retransmits?: number;
  /** UDP, as the server saw it. */
  packets?: number;
  lostPackets?: number;
  lostPct?: number;
  jitterMs?: number;
  /** The client was stopped by a signal (the numbers cover the time until then). */
  interrupted: boolean;
  /** UDP: runs started again because the first never connected its stream (iperf's connect datagram lost). */
  connectRetries?: number;
}

interface IperfSum {
  seconds?: number;
  bytes?: number;
  bits_per_second?: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
  jitter_ms?: number;
}

interface IperfJson {
  error?: string;
  start?: { test_start?: { protocol?: string } };
  end?: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
}

/** Parses `iperf3 -c ... -J` output; throws ERR_LAB_TRAFFIC when it holds no result. */
export function parseIperf(text: string): IperfResult {
  let j: IperfJson;
  try {
    j = JSON.parse(text) as IperfJson;
  } catch {
    throw new PinholeError('ERR_LAB_TRAFFIC', `iperf3: not JSON: ${text.slice(0, 500)}`);
  }
  const interrupted = typeof j.error === 'string' && /interrupt/i.test(j.error);
  const sent = j.end?.sum_sent ?? j.end?.sum;
  if (!sent || typeof sent.bits_per_second !== 'number' || (j.error && !interrupted)) {
    throw new PinholeError('ERR_LAB_TRAFFIC', `iperf3: ${j.error ?? 'no result in its output'}`);
  }
  const udp = (j.start?.test_start?.protocol ?? '').toUpperCase() === 'UDP';
  const recv = j.end?.sum_received;
  const r: IperfResult = {
    protocol: udp ? 'udp' : 'tcp',
    seconds: sent.seconds ?? 0,
    sentBytes: sent.bytes ?? 0,
    sentBps: sent.bits_per_second,
    interrupted,
  };
  // An interrupted client never hears the server's totals: its sum_received is zeros.
  if (recv && !interrupted && typeof recv.bits_per_second === 'number') r.receivedBps = recv.bits_per_second;
  if (!udp && typeof sent.retransmits === 'number') r.retransmits = sent.retransmits;
  if (udp) {
    const s = recv && !interrupted ? recv : j.end?.sum;
    if (s) {
      if (typeof s.packets === 'number') r.packets = s.packets;
      if (typeof s.lost_packets === 'number') r.lostPackets = s.lost_packets;
      if (typeof s.lost_percent === 'number') r.lostPct = s.lost_percent;
      if (typeof s.jitter_ms === 'number') r.jitterMs = s.jitter_ms;
    }
  }
  return r;
}

function iperfArgs(o: IperfOptions): string[] {
  return [
    '-c',
    o.server,
    '-p',
    String(o.port ?? 5201),
    '-t',
    String(o.seconds),
    '-J',
    ...(o.udp ? ['-u'] : []),
    ...(o.reverse ? ['-R'] : []),
    ...(o.bitrate ? ['-b', o.bitrate] : []),
    ...(o.length ? ['-l', String(o.length)] : []),
    ...(o.omit ? ['-O', String(o.omit)] : []),
  ];
}

/**
 * Runs an iperf3 client in `ns` against a server started with startIperfServer.
 *
 * A UDP run whose control connection came up but whose stream never connected is started once
 * more. iperf3 (3.12, Debian's) connects a UDP stream with one datagram to the server and then
 * waits up to 30 s for the one answer (iperf_udp_connect: no resend), so a single datagram lost
 * on a lossy path — a userspace peer still dropping under the load of the run before — hangs a
 * run whose deadline comes first while the path works. The result says so (`connectRetries`);
 * a TCP run, or anything else that misses its deadline, fails. A retry can meet a server still
 * ending the interrupted test ("busy"): that fails too.
 */
export async function iperf(ns: string, o: IperfOptions & Partial<WaitOptions>): Promise<IperfResult> {
  for (let retries = 0; ; retries++) {
    const r = await iperfOnce(ns, o, o.udp === true && retries === 0);
    if (r === 'not-connected') continue;
    return retries > 0 ? { ...r, connectRetries: retries } : r;
  }
}

async function iperfOnce(ns: string, o: IperfOptions & Partial<WaitOptions>, mayRetry: boolean): Promise<IperfResult | 'not-connected'> {
  const what = `iperf3 ${o.udp ? 'UDP' : 'TCP'} ${ns} → ${o.server}`;
  const p = spawnIn(ns, 'iperf3', iperfArgs(o), o.cpu);
  let r: ProcResult;
  try {
    r = await settleWithin(p.done, what, {
      timeoutMs: o.timeoutMs ?? (o.seconds + (o.omit ?? 0)) * 1000 + 10_000,
      ...(o.signal ? { signal: o.signal } : {}),
    });
  } catch (err) {
    if (!(err instanceof PinholeError) || err.code !== 'ERR_LAB_TIMEOUT') {
      // Aborted (Ctrl-C in the demo): no waiting on the tool.
      p.kill('SIGKILL');
      throw err;
    }
    // iperf3 prints its JSON only at the end: an interrupt makes it print how far it got (the
    // control connection and the streams connected or not, bytes sent), which says where a run
    // that never ended hung. It has 3 s to do so; the function returns once it is gone.
    p.kill('SIGINT');
    const late = await Promise.race([p.done, new Promise<undefined>((res) => setTimeout(() => res(undefined), 3000).unref())]);
    p.kill('SIGKILL');
    await p.done;
    const progress = late ? iperfProgress(late.stdout) : undefined;
    if (mayRetry && progress !== undefined && 'connected' in progress && progress.control && progress.connected === 0)
      return 'not-connected';
    if (progress) err.message += `; interrupted, it reported: ${JSON.stringify(progress)}`;
    throw err;
  }
  if (r.code !== 0) throw trafficError(what, r, extractIperfError(r.stdout));
  return parseIperf(r.stdout);
}

/**
 * How far an interrupted iperf3 client got, from its JSON: whether its control connection came up
 * (the server's cookie is in `start`), the streams connected, intervals, bytes and seconds sent,
 * its error.
 */
function iperfProgress(
  stdout: string,
): { control: boolean; connected: number; intervals: number; sentBytes: number; seconds: number; error?: string } | { output: string } {
  try {
    const j = JSON.parse(stdout) as Omit<IperfJson, 'start'> & {
      start?: { cookie?: string; connected?: unknown[] };
      intervals?: unknown[];
    };
    const sent = j.end?.sum_sent ?? j.end?.sum;
    return {
      control: typeof j.start?.cookie === 'string',
      connected: j.start?.connected?.length ?? 0,
      intervals: j.intervals?.length ?? 0,
      sentBytes: sent?.bytes ?? 0,
      seconds: sent?.seconds ?? 0,
      ...(j.error !== undefined ? { error: j.error } : {}),
    };
  } catch {
    return { output: stdout.trim().slice(-300) || '(nothing)' };
  }
}

function extractIperfError(stdout: string): string | undefined {
  try {
    return (JSON.parse(stdout) as IperfJson).error;
  } catch {
    return undefined;
  }
}

export interface IperfStream {
  /** Stops the client (SIGINT: iperf3 still prints its JSON) and returns what it sent until then. */
  stop(timeoutMs?: number): Promise<IperfResult>;
  kill(): void;
}

/** An iperf3 client running until stopped (at most `seconds`). */
export function startIperf(ns: string, o: IperfOptions): IperfStream {
  const what = `iperf3 ${o.udp ? 'UDP' : 'TCP'} ${ns} → ${o.server}`;
  const p = spawnIn(ns, 'iperf3', iperfArgs(o), o.cpu);
  return {
    kill: () => p.kill('SIGKILL'),
    async stop(timeoutMs = 5000) {
      p.kill('SIGINT');
      const r = await finish(p, what, { timeoutMs });
      try {
        return parseIperf(r.stdout);
      } catch {
        throw trafficError(what, r, extractIperfError(r.stdout));
      }
    },
  };
}
