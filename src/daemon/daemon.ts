/**
 * The daemon behind `pinhole run`: the forwarder plus what keeps it running and lets an
 * operator change it — the DaemonControl surface (control.ts) the API and metrics read, SIGHUP
 * reload, and recovery.
 *
 * Sources of connections, and which wins. The config file is the source of truth. Connections
 * added, changed or removed through the API apply at once and are marked `source: 'api'`; on
 * SIGHUP the file is read again and *the file wins*: every API change that the file does not
 * contain is discarded — with a warning naming each one in the log (event
 * `api-changes-discarded`), never silently. To keep an API change across reloads and restarts,
 * write it into the file.
 *
 * Reload (SIGHUP): an invalid file is rejected (logged with its error) and nothing changes.
 * Otherwise only the connections that differ are touched (Forwarder.apply). Changes to the
 * `uplink`, `api`, `metrics` or `log` sections need a restart: they are logged and ignored.
 *
 * Recovery: when the uplink disappears (deleted, moved to another namespace), its program is
 * detached behind our back, its MTU changes, a dataplane worker dies, or the netlink subscription fails, the
 * forwarder is stopped (restoring the host) and the daemon enters `recovering`: it tries to start
 * a new forwarder with the current connections every second, then with a growing backoff (at most
 * 30 s), until it succeeds. The API keeps answering meanwhile; changes made while recovering are
 * applied when the forwarder is back.
 */
import { readFileSync } from 'node:fs';
import { loadConfig, validateConfig, validateConnection, type ConnectionConfig, type PinholeConfig } from '../config/index.ts';
import { nudStateName } from '../netlink/rtnl.ts';
import { requireInterface } from '../kernel/iface.ts';
import { PinholeError } from '../sys/index.ts';
import type { CounterValues } from '../dataplane/counters.ts';
import type { ConnectionStatus, DaemonControl, DaemonStatus, NeighbourStatus, NextHopStatus, PutOptions } from './control.ts';
import { firstGlobalAddress, Forwarder, type Log } from './forwarder.ts';
import { Endpoint } from '../tunnel/wireguard/messages.ts';
import type { MetricsSource } from '../metrics/metrics.ts';
import { DECAP_REASONS, ENCAP_COUNTERS, NEXTHOP_COUNTERS, WG_COUNTERS } from '../dataplane/plan.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface DaemonOptions {
  configFile: string;
  config: PinholeConfig;
  log: Log;
  /** Main-thread event-loop lag, for status and metrics. */
  lag?: () => { p50: number; p99: number; max: number };
}

/** A connection as the schema reads it (no derived fields), for validation of a merged set. */
function rawConnection(k: ConnectionConfig): Record<string, unknown> {
  if (k.wireguard) return { name: k.name, local: { ...k.local }, wireguard: structuredClone(k.wireguard) };
  const v = k.vxlan!;
  return { name: k.name, local: { ...k.local }, vxlan: { vni: v.vni, remote: v.remote, port: v.port, ttl: v.ttl } };
}

function rawConfig(c: PinholeConfig, connections: readonly ConnectionConfig[]): Record<string, unknown> {
  return {
    uplink: { ...c.uplink },
    api: { ...c.api },
    ...(c.metrics ? { metrics: { ...c.metrics } } : {}),
    log: { ...c.log },
    connections: connections.map(rawConnection),
  };
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export class Daemon implements DaemonControl {
  private fwd: Forwarder | undefined;
  private problem: { code: string; message: string; since: string } | undefined;
  private readonly startedAt = new Date();
  private fileConfig: PinholeConfig;
  /** The connections in force (file + API changes), in order. */
  private current: ConnectionConfig[];
  /** Names whose present form came from the API (added or changed), and names the API deleted. */
  private readonly fromApi = new Set<string>();
  private readonly deletedByApi = new Set<string>();
  /** Changes run one at a time (API requests, reloads, recovery). */
  private chain: Promise<unknown> = Promise.resolve();
  private recoverTimer: NodeJS.Timeout | undefined;
  private recoverDelay = 1000;
  private stopped = false;
  private lastCounters: CounterValues = {};

  private constructor(private readonly opts: DaemonOptions) {
    this.fileConfig = opts.config;
    this.current = [...opts.config.connections];
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const d = new Daemon(opts);
    d.fwd = await d.startForwarder();
    return d;
  }

  get config(): PinholeConfig {
    return { ...this.fileConfig, connections: [...this.current] };
  }

  get forwarder(): Forwarder | undefined {
    return this.fwd;
  }

  private get log(): Log {
    return this.opts.log;
  }

  private startForwarder(): Promise<Forwarder> {
    return Forwarder.start(this.config, {
      log: this.log,
      onWorkerDeath: (w, why) => this.lose('ERR_DATAPLANE_WORKER', `worker ${w} died: ${why}`),
      onUplinkLost: (code, message) => this.lose(code, message),
      onMirrorFailed: (err) => this.lose('ERR_NETLINK_MIRROR_FAILED', err.message),
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** The forwarder can no longer work: stop it (restoring the host) and recover. */
  private lose(code: string, message: string): void {
    if (this.stopped || this.problem) return;
    this.problem = { code, message, since: new Date().toISOString() };
    this.log({ level: 'error', event: 'recovering', code, message });
    void this.serial(async () => {
      const f = this.fwd;
      this.fwd = undefined;
      if (f) {
        try {
          this.lastCounters = await f.stop();
        } catch (err) {
          this.log({ level: 'error', event: 'teardown', message: (err as Error).message });
        }
      }
      this.recoverDelay = 1000;
      this.scheduleRecovery();
    });
  }

  private scheduleRecovery(): void {
    if (this.stopped) return;
    this.recoverTimer = setTimeout(() => {
      void this.serial(async () => {
        if (this.stopped || this.fwd) return;
        try {
          this.fwd = await this.startForwarder();
          this.log({ level: 'info', event: 'recovered', after: this.problem?.code, mode: this.fwd.host.mode });
          this.problem = undefined;
        } catch (err) {
          const e = err as { code?: string; message: string };
          this.log({ level: 'warn', event: 'recovery-failed', code: e.code, message: e.message, retryMs: this.recoverDelay });
          this.recoverDelay = Math.min(30_000, this.recoverDelay * 2);
          this.scheduleRecovery();
        }
      });
    }, this.recoverDelay);
    this.recoverTimer.unref?.();
  }

  /** Makes `next` the connection set: through the forwarder when running, else kept for recovery. */
  private async setConnections(next: ConnectionConfig[]): Promise<void> {
    if (this.fwd) await this.fwd.apply(next);
    this.current = next;
  }

  /** SIGHUP: re-read the file; the file wins over API changes (logged). Never throws. */
  reload(): Promise<void> {
    return this.serial(async () => {
      let cfg: PinholeConfig;
      try {
        cfg = await loadConfig(this.opts.configFile);
      } catch (err) {
        const e = err as { code?: string; message: string; details?: unknown };
        this.log({ level: 'error', event: 'reload-rejected', code: e.code, message: e.message, details: e.details });
        return;
      }
      for (const section of ['uplink', 'api', 'metrics', 'log'] as const) {
        if (!sameJson(cfg[section], this.fileConfig[section])) {
          this.log({ level: 'warn', event: 'reload', section, message: `changes to '${section}' need a restart; ignored until then` });
        }
      }
      const discarded = [...new Set([...this.fromApi, ...this.deletedByApi])].filter((name) => {
        const inFile = cfg.connections.find((k) => k.name === name);
        const now = this.current.find((k) => k.name === name);
        return !sameJson(inFile, now);
      });
      try {
        await this.setConnections([...cfg.connections]);
      } catch (err) {
        const e = err as { code?: string; message: string };
        this.log({ level: 'error', event: 'reload-failed', code: e.code, message: e.message });
        return;
      }
      if (discarded.length > 0) {
        this.log({
          level: 'warn',
          event: 'api-changes-discarded',
          connections: discarded,
          message: 'SIGHUP: the config file wins; API changes not in the file are undone (write them into the file to keep them)',
        });
      }

      this.fileConfig = {
        ...cfg,
        uplink: this.fileConfig.uplink,
        api: this.fileConfig.api,
        log: this.fileConfig.log,
        ...(this.fileConfig.metrics ? { metrics: this.fileConfig.metrics } : {}),
      };
      if (!this.fileConfig.metrics) delete (this.fileConfig as { metrics?: unknown }).metrics;
      this.fromApi.clear();
      this.deletedByApi.clear();
      this.log({ level: 'info', event: 'reloaded', connections: this.current.map((k) => k.name) });
    });
  }

  putConnection(name: string, body: unknown, opts: PutOptions = {}): Promise<{ created: boolean; connection: ConnectionStatus }> {
    return this.serial(async () => {
      // A precondition comes before the body is looked at (RFC 9110 13.2.1).
      if (opts.ifAbsent && this.current.some((x) => x.name === name)) {
        throw new PinholeError('ERR_API_EXISTS', `connection '${name}' exists (If-None-Match: *): nothing changed`, {
          details: { field: 'name' },
        });
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new PinholeError('ERR_CONFIG_INVALID', 'connection: must be a mapping', { details: { field: 'connection' } });
      }
      const given = (body as { name?: unknown }).name;
      if (given !== undefined && given !== name) {
        throw new PinholeError('ERR_CONFIG_INVALID', `name: '${String(given)}' differs from the name in the path ('${name}')`, {
          details: { field: 'name' },
        });
      }
      const k = validateConnection({ ...(body as Record<string, unknown>), name }, 'connection');
      // An operator naming an interface that does not exist made a mistake: say so now (a config
      // file may name one that appears later; the API answers for what is there).
      requireInterface(k.local.interface);
      const others = this.current.filter((x) => x.name !== name);
      const byIface = others.find((x) => x.local.interface === k.local.interface);
      if (byIface) {
        throw new PinholeError('ERR_API_CONFLICT', `local.interface: '${k.local.interface}' is used by connection '${byIface.name}'`, {
          details: { field: 'local.interface' },
        });
      }
      const kv = k.vxlan;
      const same = kv && others.find((x) => x.vxlan && x.vxlan.remote === kv.remote && x.vxlan.port === kv.port && x.vxlan.vni === kv.vni);
      if (same && kv) {
        throw new PinholeError(
          'ERR_API_CONFLICT',
          `vxlan: remote ${kv.remote}, port ${kv.port} and vni ${kv.vni} are used by connection '${same.name}'`,
          {
            details: { field: 'vxlan' },
          },
        );
      }
      this.requireTunnelAddress(k);
      const existing = this.current.findIndex((x) => x.name === name);
      const next = [...this.current];
      if (existing >= 0) next[existing] = k;
      else next.push(k);
      // The merged set must still be a valid config (e.g. the uplink itself as local interface).
      const merged = validateConfig(rawConfig(this.fileConfig, next), 'connection');
      await this.setConnections(merged.connections);
      this.fromApi.add(name);
      this.deletedByApi.delete(name);
      this.log({ level: 'info', event: existing >= 0 ? 'connection-changed' : 'connection-added', connection: name, source: 'api' });
      return { created: existing < 0, connection: this.connectionStatus(name)! };
    });
  }

  /**
   * A connection's remote (or WireGuard endpoint) needs a tunnel address of its family on the
   * uplink: the configured one, else the uplink's first global address (as the forwarder picks
   * it). Checked before anything is applied, so the API answers 409 naming the field instead of
   * the forwarder's late 500. While recovering there is no uplink to look at: the forwarder
   * checks when it starts again.
   */
  private requireTunnelAddress(k: ConnectionConfig): void {
    const f = this.fwd;
    if (!f) return;
    const ep = k.wireguard?.peer.endpoint;
    const family: 4 | 6 | undefined = k.vxlan ? k.vxlan.family : ep !== undefined ? Endpoint.parseHostPort(ep).family : undefined;
    if (family === undefined) return;
    if ((family === 4 ? this.fileConfig.uplink.tunnelAddress : this.fileConfig.uplink.tunnelAddress6) !== undefined) return;
    if (firstGlobalAddress(f.mirror, f.uplink.index, family) !== undefined) return;
    const field = k.vxlan ? 'vxlan.remote' : 'wireguard.peer.endpoint';
    const what = k.vxlan ? `remote ${k.vxlan.remote}` : `endpoint ${ep}`;
    throw new PinholeError(
      'ERR_TUNNEL_NO_ADDRESS',
      `${field}: ${what} is IPv${family}, but uplink ${f.uplink.name} has no global IPv${family} address to send from (add one, or set uplink.tunnelAddress${family === 6 ? '6' : ''})`,
      { details: { field } },
    );
  }

  deleteConnection(name: string): Promise<void> {
    return this.serial(async () => {
      if (!this.current.some((x) => x.name === name)) {
        throw new PinholeError('ERR_API_NOT_FOUND', `no connection named '${name}'`, { details: { field: 'name' } });
      }
      await this.setConnections(this.current.filter((x) => x.name !== name));
      this.fromApi.delete(name);
      if (this.fileConfig.connections.some((x) => x.name === name)) this.deletedByApi.add(name);
      this.log({ level: 'info', event: 'connection-removed', connection: name, source: 'api' });
    });
  }

  private counters(): CounterValues {
    return this.fwd ? this.fwd.counters() : this.lastCounters;
  }

  private nextHopStatus(name: string): NextHopStatus {
    const f = this.fwd;
    const st = f?.nextHops().find((n) => n.connection === name);
    if (!f || !st) return { state: 'unknown' };
    const out: NextHopStatus = { state: st.state };
    if (st.via) out.via = st.via;
    if (st.reason) out.reason = st.reason;
    if (st.via && st.ifindex !== undefined) {
      const n = f.mirror.tables.getNeighbour(st.ifindex, st.via);
      if (n) {
        if (n.mac) out.mac = n.mac;
        out.neighbourState = nudStateName(n.state);
      }
    }
    return out;
  }

  private connectionStatus(name: string, counters: CounterValues = this.counters()): ConnectionStatus | undefined {
    const k = this.current.find((x) => x.name === name);
    if (!k) return undefined;
    const plan = this.fwd?.connections.find((x) => x.name === name);
    const wg = this.fwd?.wireguard.find((x) => x.name === name);
    const wl = this.fwd?.workloads.find((w) => w.connection === name);
    const waiting = this.fwd?.waiting().some((x) => x.name === name) ?? false;
    return {
      name,
      // Key *files* only: the keys themselves are never part of the configuration.
      config: k,
      source: this.fromApi.has(name) ? 'api' : 'file',
      state: !this.fwd ? 'recovering' : waiting ? 'waiting' : 'up',
      ...(!this.fwd && this.problem
        ? { problem: `${this.problem.code}: ${this.problem.message}` }
        : waiting
          ? {
              problem:
                this.fwd?.waitingReason(name) ?? `workload interface ${k.local.interface} not found; the connection starts when it appears`,
            }
          : {}),
      local: plan?.local ?? (wg ? [wg.local4, wg.local6].filter(Boolean).join(',') : ''),
      ...(wg && this.fwd ? { wireguard: this.fwd.wireguardStatus(wg) } : {}),
      driver: wl?.driver ?? 'afpacket',
      reasons: wl?.reasons ?? [],
      nextHop: this.nextHopStatus(name),
      counters: counters[`conn:${name}`] ?? {},
    };
  }

  connections(): ConnectionStatus[] {
    const c = this.counters();
    return this.current.map((k) => this.connectionStatus(k.name, c)!);
  }

  status(): DaemonStatus {
    const f = this.fwd;
    const c = this.counters();
    const drops: Record<string, number> = {};
    for (const stage of ['decap', 'encap', 'nexthop', 'wireguard']) {
      for (const [k, v] of Object.entries(c[stage] ?? {})) if (k.startsWith('drop:') && v > 0) drops[`${stage}:${k.slice(5)}`] = v;
    }
    const lag = this.opts.lag?.() ?? { p50: 0, p99: 0, max: 0 };
    return {
      state: f ? 'running' : 'recovering',
      ...(this.problem ? { problem: this.problem } : {}),
      pid: process.pid,
      version: VERSION,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      configFile: this.opts.configFile,
      uplink: f
        ? {
            interface: f.uplink.name,
            link: f.uplinkLink,
            mode: f.host.mode,
            xdpMode: f.host.xdpMode ?? null,
            detail: [f.supervisor.workers[0]?.ports.find((p) => p.name === 'uplink')?.detail, f.host.attachDetail]
              .filter(Boolean)
              .join(', '),
            reasons: f.host.reasons,
            queues: f.host.queues,
            ports: f.ports,
            tunnelAddresses: f.describe().tunnelAddresses as string[],
            perQueue: f.supervisor.perWorker().map((v, queue) => {
              const counters: Record<string, number> = {};
              for (const [owner, names] of Object.entries(v)) {
                if (!owner.startsWith('port:') && owner !== 'engine') continue;
                for (const [n, x] of Object.entries(names)) counters[`${owner}.${n}`] = x;
              }
              return { queue, counters };
            }),
            pinhole: f.host.pinholeCounters() ?? null,
          }
        : null,
      connections: this.connections(),
      drops,
      nexthop: c.nexthop ?? {},
      eventLoopLagMs: lag,
    };
  }

  neighbours(): NeighbourStatus[] {
    const f = this.fwd;
    if (!f) return [];
    const used = new Map<string, string[]>();
    for (const n of f.nextHops()) {
      if (!n.via || n.ifindex === undefined) continue;
      const key = `${n.ifindex}/${n.via}`;
      used.set(key, [...(used.get(key) ?? []), n.connection]);
    }
    const out: NeighbourStatus[] = [];
    for (const n of f.mirror.tables.listNeighbours()) {
      if (n.ifindex !== f.uplink.index) continue;
      out.push({
        family: n.family,
        ip: n.ip,
        dev: f.uplink.name,
        mac: n.mac ?? null,
        state: nudStateName(n.state),
        usedBy: used.get(`${n.ifindex}/${n.ip}`) ?? [],
      });
    }
    return out;
  }

  /** What the metrics endpoint reads at scrape time (metrics/metrics.ts). */
  metricsSource(): MetricsSource {
    const dropsOf = (c: CounterValues): Record<string, Record<string, number>> => {
      const out: Record<string, Record<string, number>> = { decap: {}, encap: {}, nexthop: {} };
      if (this.current.some((k) => k.wireguard)) {
        out.wireguard = {};
        for (const k of WG_COUNTERS) if (k.startsWith('drop:')) out.wireguard[k.slice(5)] = c.wireguard?.[k] ?? 0;
      }
      // Every reason, zeros included, so each series exists from the first scrape.
      for (const r of DECAP_REASONS) out.decap![r] = c.decap?.[`drop:${r}`] ?? 0;
      for (const k of ENCAP_COUNTERS) if (k.startsWith('drop:')) out.encap![k.slice(5)] = c.encap?.[k] ?? 0;
      for (const k of NEXTHOP_COUNTERS) if (k.startsWith('drop:')) out.nexthop![k.slice(5)] = c.nexthop?.[k] ?? 0;
      return out;
    };
    return {
      uplink: () => {
        const f = this.fwd;
        return {
          interface: this.fileConfig.uplink.interface,
          up: f?.uplinkLink === 'up',
          mode: f?.host.mode ?? 'afpacket',
          reason: f ? f.host.reasons.map((r) => r.code).join(',') : (this.problem?.code ?? ''),
          queues: f?.host.queues ?? 0,
        };
      },
      perQueue: () => this.fwd?.supervisor.perWorker().map((counters, queue) => ({ queue, counters })) ?? [],
      connections: () => {
        const c = this.counters();
        // WireGuard connections have no VNI: -1 in the label.
        return this.current.map((k) => ({ name: k.name, vni: k.vxlan?.vni ?? -1, counters: c[`conn:${k.name}`] ?? {} }));
      },
      drops: () => dropsOf(this.counters()),
      pinhole: () => this.fwd?.host.pinholeCounters() ?? null,
      nexthop: () => this.counters().nexthop ?? {},
      rings: () => {
        const out: { queue: number; port: string; ring: string; used: number; size: number }[] = [];
        this.fwd?.supervisor.perWorker().forEach((v, queue) => {
          for (const [owner, n] of Object.entries(v)) {
            if (!owner.startsWith('port:')) continue;
            const port = owner.slice(5);
            // The rings a port really has: AF_XDP rx/tx descriptor rings, AF_PACKET RX slots or
            // blocks and TX-ring slots. A port without one (size 0: not sampled yet, or no ring)
            // has no series rather than a made-up zero.
            if (n.rx_ring_size) out.push({ queue, port, ring: 'rx', used: n.rx_ring_used ?? 0, size: n.rx_ring_size });
            if (n.tx_ring_size) out.push({ queue, port, ring: 'tx', used: n.tx_ring_used ?? 0, size: n.tx_ring_size });
          }
        });
        return out;
      },
      eventLoopLagSeconds: () => {
        const l = this.opts.lag?.() ?? { p50: 0, p99: 0, max: 0 };
        return { p50: l.p50 / 1000, p99: l.p99 / 1000, max: l.max / 1000 };
      },
    };
  }

  /** Stops everything (the forwarder restores the host). Idempotent. */
  async stop(): Promise<CounterValues> {
    this.stopped = true;
    if (this.recoverTimer) clearTimeout(this.recoverTimer);
    await this.chain;
    const f = this.fwd;
    this.fwd = undefined;
    if (f) this.lastCounters = await f.stop();
    return this.lastCounters;
  }
}
