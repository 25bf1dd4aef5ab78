/**
 * `pinhole run --config FILE [--stats-interval MS]`
 *
 * The daemon in the foreground: reads and validates the YAML config (nothing is touched when
 * it is invalid: exit 1 with `ERR_CONFIG_*` naming the field), starts the uplink, the workload
 * interfaces and the VXLAN and WireGuard connections (daemon/daemon.ts, daemon/forwarder.ts),
 * the API and the metrics endpoint, prints one JSON `ready` line on stdout (mode and why,
 * workload drivers and why, connections, next hops), optional `stats` lines, and on
 * SIGINT/SIGTERM/SIGQUIT or a closed stdout stops cleanly and prints the final counters as one
 * `stopped` line; SIGHUP reloads the file. A lost uplink or a dead worker is recovered by the
 * daemon itself (state `recovering` in the stats lines). Logs are JSON lines on stderr. Exit 0.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/index.ts';
import { Daemon } from '../../daemon/daemon.ts';
import { createMetrics } from '../../metrics/metrics.ts';
import { startApiServer, type ApiServer } from '../../api/server.ts';
import { startMetricsServer, type MetricsServer } from '../../metrics/server.ts';
import { asLogFn, createLogger } from '../log.ts';
import type { CounterValues } from '../../dataplane/counters.ts';
import { PinholeError } from '../../sys/index.ts';
import { requireCaps } from '../caps.ts';
import { toJson, type CommandIO } from '../io.ts';
import { startLagMonitor } from '../lag.ts';
import { parseMillis, runUntilStopped } from '../lifecycle.ts';

/** The counters an operator reads: per connection, drops by reason, ports. Zero drop reasons are left out. */
export function summarize(c: CounterValues): Record<string, unknown> {
  const connections: Record<string, Record<string, number>> = {};
  const ports: Record<string, Record<string, number>> = {};
  const drops: Record<string, number> = {};
  for (const [owner, v] of Object.entries(c)) {
    if (owner.startsWith('conn:')) connections[owner.slice(5)] = v;
    else if (owner.startsWith('port:')) ports[owner.slice(5)] = v;
    else if (owner === 'decap' || owner === 'encap' || owner === 'nexthop' || owner === 'wireguard') {
      for (const [k, n] of Object.entries(v)) if (k.startsWith('drop:') && n > 0) drops[`${owner}:${k.slice(5)}`] = n;
    }
  }
  // WireGuard: handshakes, datagrams, neighbour answers (its drops are in `drops` as wireguard:<reason>).
  const wireguard: Record<string, number> = {};
  for (const [k, n] of Object.entries(c.wireguard ?? {})) if (!k.startsWith('drop:')) wireguard[k] = n;
  return { connections, drops, ports, nexthop: c.nexthop ?? {}, ...(c.wireguard ? { wireguard } : {}) };
}

export async function run(args: string[], io: CommandIO, opts: { signal?: AbortSignal } = {}): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string' }, 'stats-interval': { type: 'string' } },
    strict: true,
  });
  if (!values.config) throw new PinholeError('ERR_CLI_USAGE', 'run: --config FILE is required');
  const statsMs = values['stats-interval'] === undefined ? 0 : parseMillis('--stats-interval', values['stats-interval'], 10);
  // Validated before anything is touched.
  const config = await loadConfig(values.config);
  requireCaps(
    'running the forwarder',
    config.uplink.mode === 'afpacket' ? ['CAP_NET_RAW', 'CAP_NET_ADMIN'] : ['CAP_NET_RAW', 'CAP_NET_ADMIN', 'CAP_BPF'],
  );
  const log = asLogFn(createLogger({ level: config.log.level, destination: { write: (line: string) => io.err(line.replace(/\n$/, '')) } }));
  const lag = startLagMonitor(10);
  let daemon: Daemon | undefined;

  // SIGHUP reloads the config file (see daemon.ts); the other stop signals stop.
  const hangup = (): void => {
    log({ level: 'info', event: 'signal', signal: 'SIGHUP', message: 'reloading the config file' });
    void daemon?.reload();
  };
  return runUntilStopped({ log, hangup, ...(opts.signal ? { signal: opts.signal } : {}) }, async (life) => {
    daemon = await Daemon.start({ configFile: values.config!, config, log, lag: () => lag.snapshot() });
    const d = daemon;
    let metricsServer: MetricsServer | undefined;
    let api: ApiServer | undefined;
    try {
      api = await startApiServer(d, { socket: config.api.socket, log });
      log({ level: 'info', event: 'api', socket: config.api.socket });
      if (config.metrics) {
        metricsServer = await startMetricsServer(createMetrics(d.metricsSource()), config.metrics.listen, log);
        log({ level: 'info', event: 'metrics', listen: metricsServer.address });
      }
      const fwd = d.forwarder!;
      io.out(toJson({ event: 'ready', ...fwd.describe(), nextHops: fwd.nextHops(), api: config.api.socket }));
      log({ level: 'info', event: 'ready', mode: fwd.host.mode, connections: fwd.connections.length, queues: fwd.host.queues });
      const printStats = (): void => {
        try {
          const st = d.status();
          const f = d.forwarder;
          io.out(
            toJson({
              event: 'stats',
              state: st.state,
              ...summarize(f ? f.counters() : {}),
              nextHops: f ? f.nextHops() : [],
            }),
          );
        } catch (err) {
          log({ level: 'warn', event: 'stats', message: (err as Error).message });
        }
      };
      const statsTimer = statsMs ? setInterval(printStats, statsMs) : undefined;
      const why = await life.stopRequested;
      if (statsTimer) clearInterval(statsTimer);
      const final = await d.stop();
      io.out(toJson({ event: 'stopped', mode: fwd.host.mode, ...summarize(final), eventLoopLagMs: lag.stop() }));
      log({ level: 'info', event: 'stopped', reason: why });
    } finally {
      await api?.close();
      await metricsServer?.close();
      await d.stop();
    }
    return 0;
  });
}
