/**
 * `pinhole status [--json] [--socket PATH]`: what a running daemon is doing, asked over its API
 * (GET /v1/status and GET /v1/neighbours): the uplink's mode and why, queues, ports, tunnel
 * addresses, each connection with its driver, next hop and counters, drops by reason, and the
 * neighbours the connections use. `--json` prints the status document with `neighbours` added
 * (every neighbour on the uplink, `usedBy` naming the connections), for scripts.
 */
import { parseArgs } from 'node:util';

import { ApiClient, DEFAULT_API_SOCKET } from '../../api/client.ts';
import type { ConnectionStatus, DaemonStatus, NeighbourStatus, ReasonEntry } from '../../daemon/control.ts';
import { PinholeError } from '../../sys/index.ts';
import { table, toJson, type CommandIO } from '../io.ts';

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: 'boolean', default: false }, socket: { type: 'string', default: DEFAULT_API_SOCKET } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new PinholeError('ERR_CLI_USAGE', `status takes no arguments (got ${positionals.join(' ')})`);
  if (values.socket === '') throw new PinholeError('ERR_CLI_USAGE', '--socket needs a path');
  const api = new ApiClient(values.socket);
  const [status, neighbours] = await Promise.all([api.status(), api.neighbours()]);
  io.out(values.json ? toJson({ ...status, neighbours }) : formatStatus(status, neighbours));
  return 0;
}

/** `3725` → `1h02m05s`. */
export function formatUptime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number): string => String(n).padStart(2, '0');
  if (d) return `${d}d${two(h)}h${two(m)}m`;
  if (h) return `${h}h${two(m)}m${two(sec)}s`;
  if (m) return `${m}m${two(sec)}s`;
  return `${sec}s`;
}

function counterList(c: Record<string, number> | null | undefined, skipZero = false): string {
  const e = Object.entries(c ?? {}).filter(([, v]) => !skipZero || v !== 0);
  return e.length ? e.map(([k, v]) => `${k} ${v}`).join(', ') : 'none';
}

function reasonLines(indent: string, reasons: readonly ReasonEntry[]): string[] {
  return reasons.map((r) => `${indent}${r.code}: ${r.message}`);
}

/** `198.18.0.2:4789`, `[2001:db8::2]:4789`. */
function endpoint(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

function drops(c: ConnectionStatus): number {
  let n = 0;
  for (const [k, v] of Object.entries(c.counters)) if (k.startsWith('drop')) n += v;
  return n;
}

const n = (v: number | undefined): string => (v === undefined ? '-' : String(v));

/** The human table. */
export function formatStatus(s: DaemonStatus, neighbours: readonly NeighbourStatus[]): string {
  const u = s.uplink;
  const out: string[] = [];
  out.push(`pinhole ${s.version}, pid ${s.pid}, up ${formatUptime(s.uptimeSeconds)} (since ${s.startedAt}), config ${s.configFile}`);
  out.push(`state      ${s.state}`);
  if (s.problem) out.push(`  problem  ${s.problem.code}: ${s.problem.message} (since ${s.problem.since})`);
  out.push('');
  if (!u) {
    out.push('uplink     none (recovering)');
  } else {
    out.push(`uplink     ${u.interface}: ${u.mode}${u.xdpMode ? ` (XDP ${u.xdpMode})` : ''}${u.detail ? `, ${u.detail}` : ''}`);
    if (u.link === 'down') out.push('  link     down (no carrier or admin down): nothing flows until it is up again');
    if (u.reasons.length) out.push('  why', ...reasonLines('    ', u.reasons));
    out.push(`queues     ${u.queues}`);
    out.push(`ports      ${u.ports.length ? u.ports.join(', ') : 'none'}`);
    out.push(`addresses  ${u.tunnelAddresses.length ? u.tunnelAddresses.join(', ') : 'none'}`);
    if (u.pinhole) out.push(`pinhole    ${counterList(u.pinhole)}`);
  }
  out.push(`drops      ${counterList(s.drops, true)}`);
  out.push(`next hops  ${counterList(s.nexthop)}`);
  const lag = s.eventLoopLagMs;
  out.push(`lag        p50 ${lag.p50.toFixed(2)} ms, p99 ${lag.p99.toFixed(2)} ms, max ${lag.max.toFixed(2)} ms`);

  if (u && u.perQueue.length) {
    const keys = [...new Set(u.perQueue.flatMap((q) => Object.keys(q.counters)))];
    out.push('');
    out.push(
      table(
        ['QUEUE', ...keys.map((k) => k.toUpperCase())],
        u.perQueue.map((q) => [String(q.queue), ...keys.map((k) => n(q.counters[k]))]),
      ),
    );
  }

  out.push('');
  if (s.connections.length === 0) {
    out.push('no connections');
  } else {
    out.push(
      table(
        ['CONNECTION', 'VNI', 'REMOTE', 'LOCAL', 'DRIVER', 'NEXT HOP', 'MAC', 'STATE', 'SOURCE'],
        s.connections.map((c) => [
          c.name,
          c.config.vxlan ? String(c.config.vxlan.vni) : 'wg',
          c.config.vxlan
            ? endpoint(c.config.vxlan.remote, c.config.vxlan.port)
            : (c.config.wireguard!.peer.endpoint ?? `(learned) :${c.config.wireguard!.listenPort}`),
          c.config.local.interface,
          c.driver,
          c.nextHop.via ?? '-',
          c.nextHop.mac ?? '-',
          c.state !== undefined && c.state !== 'up'
            ? c.state
            : c.nextHop.state === 'ok'
              ? (c.nextHop.neighbourState ?? 'ok')
              : c.nextHop.state,
          c.source,
        ]),
      ),
    );
    out.push('');
    out.push(
      table(
        ['CONNECTION', 'FRAMES IN', 'BYTES IN', 'FRAMES OUT', 'BYTES OUT', 'DROPS'],
        s.connections.map((c) => [
          c.name,
          n(c.counters.decap_frames),
          n(c.counters.decap_bytes),
          n(c.counters.encap_frames),
          n(c.counters.encap_bytes),
          String(drops(c)),
        ]),
      ),
    );
    out.push('(in: from the remote to the workload, decapsulated; out: from the workload to the remote, encapsulated)');
    const notes: string[] = [];
    for (const c of s.connections) {
      if (c.problem) notes.push(`  ${c.name}: ${c.state}: ${c.problem}`);
      if (c.reasons.length) notes.push(`  ${c.name}: driver ${c.driver}`, ...reasonLines('    ', c.reasons));
      if (c.nextHop.state !== 'ok' || c.nextHop.reason) {
        notes.push(`  ${c.name}: next hop ${c.nextHop.state}${c.nextHop.reason ? `: ${c.nextHop.reason}` : ''}`);
      }
      const d = Object.entries(c.counters).filter(([k, v]) => k.startsWith('drop') && v > 0);
      if (d.length) notes.push(`  ${c.name}: drops ${d.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    }
    if (notes.length) out.push('', 'notes', ...notes);
  }

  const used = neighbours.filter((x) => x.usedBy.length > 0);
  out.push('');
  if (used.length === 0) out.push('no neighbours in use');
  else {
    out.push(
      table(
        ['NEIGHBOUR', 'DEV', 'MAC', 'STATE', 'USED BY'],
        used.map((x) => [x.ip, x.dev, x.mac ?? '-', x.state, x.usedBy.join(', ')]),
      ),
    );
  }
  return out.join('\n');
}
