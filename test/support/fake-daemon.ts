/**
 * A DaemonControl without a dataplane, for testing the API server, its client and the CLI verbs.
 * It refuses what the real daemon (src/daemon/daemon.ts) refuses, with the same codes, fields and
 * in the same order: an existing name with `ifAbsent` (ERR_API_EXISTS, field `name`), invalid
 * connections (ERR_CONFIG_INVALID, field `connection.vxlan.vni`), an interface or tunnel used by
 * another connection (ERR_API_CONFLICT), a remote of a family the uplink has no tunnel address for
 * (ERR_TUNNEL_NO_ADDRESS, field `vxlan.remote`; test/lab/api.test.ts checks the real daemon
 * answers the same), unknown names (ERR_API_NOT_FOUND), and changes while `busy` (ERR_API_BUSY). Changes are serialised like the daemon's; `maxConcurrentChanges` records
 * whether two ever overlapped. `changeDelayMs` makes each change take that long; `failNext`
 * makes the next call throw.
 */
import type { ConnectionConfig } from '../../src/config/index.ts';
import { validateConnection } from '../../src/config/index.ts';
import type { ConnectionStatus, DaemonControl, DaemonStatus, NeighbourStatus, PutOptions } from '../../src/daemon/control.ts';
import { PinholeError } from '../../src/sys/index.ts';

export interface FakeDaemonOptions {
  uplinkInterface?: string;
  /** Tunnel addresses of the uplink; a remote needs one of its family. */
  tunnelAddresses?: string[];
  connections?: unknown[];
}

export class FakeDaemon implements DaemonControl {
  readonly uplinkInterface: string;
  readonly tunnelAddresses: string[];
  readonly conns = new Map<string, ConnectionStatus>();
  busy = false;
  /** Report `recovering` with no uplink, as the daemon does while the uplink is gone. */
  recovering = false;
  changeDelayMs = 0;
  failNext: unknown = undefined;
  /** Every change applied, in order: `put NAME` / `delete NAME`. */
  readonly changes: string[] = [];
  maxConcurrentChanges = 0;
  private inChange = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: FakeDaemonOptions = {}) {
    this.uplinkInterface = opts.uplinkInterface ?? 'ph-up0';
    this.tunnelAddresses = opts.tunnelAddresses ?? ['198.18.0.1'];
    for (const c of opts.connections ?? []) {
      const cfg = validateConnection(c, 'connection');
      this.conns.set(cfg.name, this.statusOf(cfg, 'file'));
    }
  }

  private maybeFail(): void {
    if (this.failNext !== undefined) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
  }

  /** Runs `fn` after every earlier change, like the daemon's change queue. */
  private serialise<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.busy) return Promise.reject(new PinholeError('ERR_API_BUSY', 'a reload is being applied; retry'));
    const run = async (): Promise<T> => {
      this.inChange++;
      this.maxConcurrentChanges = Math.max(this.maxConcurrentChanges, this.inChange);
      try {
        if (this.changeDelayMs) await new Promise((r) => setTimeout(r, this.changeDelayMs));
        return await fn();
      } finally {
        this.inChange--;
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private statusOf(cfg: ConnectionConfig, source: 'file' | 'api'): ConnectionStatus {
    const i = this.conns.size + 1;
    return {
      name: cfg.name,
      config: cfg,
      source,
      state: 'up',
      local: this.tunnelAddresses.find((a) => a.includes(':') === (cfg.vxlan!.family === 6)) ?? '',
      driver: cfg.local.interface.endsWith('p') ? 'afpacket' : 'afxdp',
      reasons: cfg.local.interface.endsWith('p') ? [{ code: 'WORKLOAD_NO_XDP', message: 'the peer has no XDP program' }] : [],
      nextHop: {
        state: 'ok',
        via: cfg.vxlan!.remote,
        mac: `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`,
        neighbourState: 'REACHABLE',
      },
      counters: {
        decap_frames: 10 * i,
        decap_bytes: 1000 * i,
        encap_frames: 20 * i,
        encap_bytes: 2000 * i,
        drop_too_big: 0,
        drop_nexthop: i - 1,
      },
    };
  }

  status(): DaemonStatus {
    this.maybeFail();
    const base: Omit<DaemonStatus, 'state'> = {
      pid: 4242,
      version: '0.1.0',
      startedAt: '2025-01-01T00:00:00.000Z',
      uptimeSeconds: 3725,
      configFile: '/etc/pinhole/pinhole.yaml',
      uplink: {
        interface: this.uplinkInterface,
        mode: 'afxdp',
        xdpMode: 'native',
        detail: 'copy mode, native XDP via bpf_link',
        reasons: [{ code: 'XSK_COPY_MODE', message: 'veth does not support zero-copy' }],
        queues: 2,
        ports: [...new Set([...this.conns.values()].map((c) => c.config.vxlan!.port))].sort((a, b) => a - b),
        tunnelAddresses: this.tunnelAddresses,
        perQueue: [
          { queue: 0, counters: { rx_frames: 5, rx_bytes: 500, tx_frames: 6, tx_bytes: 600 } },
          { queue: 1, counters: { rx_frames: 7, rx_bytes: 700, tx_frames: 8, tx_bytes: 800 } },
        ],
        pinhole: { pass: 100, redirect: 12, drop: 0 },
      },
      connections: this.connections(),
      drops: { 'decap:unknown-vni': 3 },
      nexthop: { misses: 1, queued: 1, flushed: 1 },
      eventLoopLagMs: { p50: 0.05, p99: 0.5, max: 2 },
    };
    if (!this.recovering) return { state: 'running', ...base };
    return {
      ...base,
      state: 'recovering',
      problem: { code: 'ERR_IFACE_NOT_FOUND', message: `uplink ${this.uplinkInterface} is gone`, since: '2025-01-01T01:00:00.000Z' },
      uplink: null,
    };
  }

  connections(): ConnectionStatus[] {
    return [...this.conns.values()];
  }

  putConnection(name: string, body: unknown, opts: PutOptions = {}): Promise<{ created: boolean; connection: ConnectionStatus }> {
    return this.serialise(() => {
      this.maybeFail();
      if (opts.ifAbsent && this.conns.has(name)) {
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
      const cfg = validateConnection({ ...body, name }, 'connection');
      for (const other of this.conns.values()) {
        if (other.name === name) continue;
        if (other.config.local.interface === cfg.local.interface) {
          throw new PinholeError('ERR_API_CONFLICT', `local.interface: '${cfg.local.interface}' is used by connection '${other.name}'`, {
            details: { field: 'local.interface' },
          });
        }
        const o = other.config.vxlan;
        if (o && o.remote === cfg.vxlan!.remote && o.port === cfg.vxlan!.port && o.vni === cfg.vxlan!.vni) {
          throw new PinholeError('ERR_API_CONFLICT', `vxlan: remote, port and vni are used by connection '${other.name}'`, {
            details: { field: 'vxlan' },
          });
        }
      }
      const family = cfg.vxlan!.family;
      if (!this.tunnelAddresses.some((a) => a.includes(':') === (family === 6))) {
        throw new PinholeError(
          'ERR_TUNNEL_NO_ADDRESS',
          `vxlan.remote: remote ${cfg.vxlan!.remote} is IPv${family}, but uplink ${this.uplinkInterface} has no global IPv${family} address to send from (add one, or set uplink.tunnelAddress${family === 6 ? '6' : ''})`,
          { details: { field: 'vxlan.remote' } },
        );
      }
      if (cfg.local.interface === this.uplinkInterface) {
        throw new PinholeError('ERR_CONFIG_INVALID', `connection.local.interface: '${cfg.local.interface}' is the uplink interface`, {
          details: { field: 'connection.local.interface' },
        });
      }
      const created = !this.conns.has(name);
      const status = this.statusOf(cfg, 'api');
      this.conns.set(name, status);
      this.changes.push(`put ${name}`);
      return { created, connection: status };
    });
  }

  deleteConnection(name: string): Promise<void> {
    return this.serialise(() => {
      this.maybeFail();
      if (!this.conns.delete(name)) throw new PinholeError('ERR_API_NOT_FOUND', `no connection named '${name}'`);
      this.changes.push(`delete ${name}`);
    });
  }

  neighbours(): NeighbourStatus[] {
    this.maybeFail();
    const byIp = new Map<string, NeighbourStatus>();
    for (const c of this.conns.values()) {
      const ip = c.nextHop.via!;
      const n = byIp.get(ip) ?? {
        family: c.config.vxlan!.family,
        ip,
        dev: this.uplinkInterface,
        mac: c.nextHop.mac ?? null,
        state: 'REACHABLE',
        usedBy: [],
      };
      n.usedBy.push(c.name);
      byIp.set(ip, n);
    }
    const gateway: NeighbourStatus = { family: 4, ip: '198.18.0.254', dev: this.uplinkInterface, mac: null, state: 'STALE', usedBy: [] };
    return [...byIp.values(), gateway];
  }
}
