/**
 * `pinhole probe [--iface NAME] [--json]`: what this kernel and interface allow, and the mode
 * pinhole would pick. The interface defaults to the one carrying the IPv4 default route.
 *
 * An attached pinhole program is told apart three ways: another owner's (not our instructions
 * and maps), a stale one (ours, and no pinhole holds the interface lock), or the live program of
 * a running pinhole (ours, lock held; `running` names its pid).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { kernelRelease, probeFeatures, type FeatureResult } from '../../kernel/features.ts';
import { requireInterface, type IfaceInfo } from '../../kernel/iface.ts';
import { PinholeError } from '../../sys/index.ts';
import { decideUplink } from '../../uplink/decide.ts';
import { lockHolder } from '../../uplink/lock.ts';
import { table, toJson, type CommandIO } from '../io.ts';

/** The interface of the first IPv4 default route (read-only, from /proc/net/route). */
export function defaultRouteInterface(): string | undefined {
  try {
    for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 7 && f[1] === '00000000' && f[7] === '00000000') return f[0];
    }
  } catch {
    // no procfs: no default
  }
  return undefined;
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      iface: { type: 'string' },
      json: { type: 'boolean', default: false },
      'replace-foreign': { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.iface !== undefined && values.iface.trim() === '') {
    throw new PinholeError('ERR_CLI_USAGE', 'probe: --iface needs an interface name (omit it for the default-route interface)');
  }
  const features = await probeFeatures();
  let iface: IfaceInfo | undefined;
  // Without --iface: the interface of the IPv4 default route, the uplink pinhole is meant for.
  const name = values.iface ?? defaultRouteInterface();
  if (name) iface = requireInterface(name);
  const holder = iface ? lockHolder(iface.index) : undefined;
  const running = holder?.held ? (holder.pid !== undefined ? { pid: holder.pid } : {}) : undefined;
  const decision = decideUplink(features, iface, { replaceForeign: values['replace-foreign'], ...(running ? { running } : {}) });
  const report = {
    kernel: { release: kernelRelease() },
    features: Object.fromEntries(Object.entries(features).map(([k, f]) => [k, f.status === 'ok'])),
    featureDetails: features,
    iface: iface
      ? {
          name: iface.name,
          index: iface.index,
          kind: iface.kind,
          driver: iface.driver ?? null,
          mtu: iface.mtu,
          maxXdpMtu: iface.maxXdpMtu ?? null,
          rxQueues: iface.rxQueues ?? null,
          txQueues: iface.txQueues ?? null,
          channels: iface.channels ?? null,
          up: iface.up,
          xdp: iface.xdp,
          running: running ? { pid: running.pid ?? null } : null,
        }
      : null,
    decision,
  };
  if (values.json) {
    io.out(toJson(report));
    return 0;
  }
  const fr = (f: FeatureResult): string[] => [f.name, f.status, `>= ${f.minKernel}`, f.detail ?? ''];
  io.out(`kernel ${report.kernel.release}\n`);
  io.out(table(['feature', 'status', 'kernel', 'detail'], Object.values(features).map(fr)));
  if (iface) {
    const whose = iface.xdp.ours ? (running ? ' (pinhole, live)' : ' (pinhole, stale)') : ' (foreign)';
    const xdp =
      iface.xdp.mode === 'none' ? 'none' : `${iface.xdp.mode} id ${iface.xdp.progId ?? '?'} ${iface.xdp.progName ?? ''}`.trim() + whose;
    io.out(`\ninterface ${iface.name} (index ${iface.index})`);
    io.out(
      table(
        ['kind', 'driver', 'mtu', 'max xdp mtu', 'rx queues', 'tx queues', 'xdp'],
        [
          [
            iface.kind,
            iface.driver ?? '-',
            String(iface.mtu),
            iface.maxXdpMtu ? String(iface.maxXdpMtu) : 'unknown',
            String(iface.rxQueues ?? '-'),
            String(iface.txQueues ?? '-'),
            xdp,
          ],
        ],
      ),
    );
  }
  io.out(`\ndecision: ${decision.mode}${decision.xdpMode ? ` (${decision.xdpMode} XDP)` : ''}`);
  for (const r of decision.reasons) io.out(`  - ${r.code}: ${r.message}`);
  return 0;
}
