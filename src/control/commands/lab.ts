/**
 * `pinhole lab up|down|status [--json]`: the two-node lab of `pinhole demo` (src/control/lab/
 * commands.ts), for looking around by hand.
 *
 *   up      builds the namespaces and veths, writes each node's config file; does not start
 *           pinhole (the printed commands do). A lab left by an earlier run is replaced, unless a
 *           demo or pinhole still runs in it (ERR_LAB_BUSY).
 *   down    removes everything the lab and any run of it left: processes in its namespaces, the
 *           namespaces (veths and XDP programs go with them), pins, config/state/socket files.
 *           Idempotent: also after a SIGKILLed demo, and when nothing is there.
 *   status  namespaces, interfaces and addresses, XDP programs, config files, and whether pinhole
 *           runs on each node.
 * Needs root (namespaces, veths, BPF).
 */
import { parseArgs } from 'node:util';
import { PinholeError } from '../../sys/index.ts';
import { requireCaps } from '../caps.ts';
import { table, toJson, type CommandIO } from '../io.ts';
import {
  LAB_CONNECTION,
  labDown,
  labStatus,
  labUp,
  pinholeCommand,
  type LabDownResult,
  type LabStatus,
  type LabUpResult,
} from '../lab/commands.ts';

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  const [verb, ...extra] = positionals;
  if (verb !== 'up' && verb !== 'down' && verb !== 'status') {
    throw new PinholeError('ERR_CLI_USAGE', verb ? `lab: unknown subcommand ${verb}` : 'lab: up, down or status?');
  }
  if (extra.length > 0) throw new PinholeError('ERR_CLI_USAGE', `lab ${verb}: unexpected argument ${extra[0]}`);
  requireCaps(`lab ${verb}`, ['CAP_SYS_ADMIN', 'CAP_NET_ADMIN']);
  if (verb === 'up') {
    const r = await labUp();
    io.out(values.json ? toJson(r) : renderUp(r));
  } else if (verb === 'down') {
    const r = await labDown();
    io.out(values.json ? toJson(r) : renderDown(r));
  } else {
    const s = labStatus();
    io.out(values.json ? toJson(s) : renderStatus(s));
  }
  return 0;
}

function renderUp(r: LabUpResult): string {
  const { a, b } = r.plan;
  const cli = pinholeCommand();
  const rows = [a, b].flatMap((n) => {
    const w = n.workloads[0]!;
    const files = r.nodes.find((f) => f.node === n.name)!;
    return [
      [`node ${n.name}`, n.ns, n.uplink, `${n.underlay4}/24 ${n.underlay6}/64`, files.config],
      [`pod ${n.name.toUpperCase()}${w.index}`, w.podNs, `${w.podIface} ⇄ ${w.iface}`, `${w.podAddr4}/24 ${w.podAddr6}/64`, ''],
    ];
  });
  const w = a.workloads[0]!;
  return [
    `lab up: ${r.plan.namespaces.length} namespaces in ${(r.elapsedMs / 1000).toFixed(1)}s${r.replaced ? ' (replaced a leftover lab)' : ''}`,
    '',
    table(['what', 'namespace', 'interface', 'addresses', 'config'], rows),
    '',
    `connection ${LAB_CONNECTION}: VXLAN VNI ${w.vni}, node a ${a.tunnelAddr} ⇄ node b ${b.tunnelAddr}, UDP ${r.plan.vxlanPort}`,
    '',
    'Start pinhole on each node (root; one terminal each, or append &):',
    ...r.nodes.map((f) => `  ip netns exec ${f.ns} ${cli} run --config ${f.config}`),
    'Then:',
    `  ip netns exec ${w.podNs} ping ${b.workloads[0]!.podAddr4}`,
    ...r.nodes.map((f) => `  ${cli} status --socket ${f.socket}`),
    `  ${cli} lab status`,
    `  ${cli} lab down`,
  ].join('\n');
}

function renderDown(r: LabDownResult): string {
  const lines = [`lab down: ${(r.elapsedMs / 1000).toFixed(1)}s`];
  if (r.demo !== null) lines.push(`  stopped the running demo (pid ${r.demo})`);
  for (const p of r.processes) lines.push(`  ended pid ${p.pid} in ${p.ns} (${p.signal}): ${p.cmd}`);
  for (const x of r.xdp)
    lines.push(
      `  XDP program ${x.id}${x.name ? ` (${x.name})` : ''} on ${x.iface} in ${x.ns}: detached (gone with the namespace at the latest)`,
    );
  if (r.namespaces.length) lines.push(`  removed namespaces ${r.namespaces.join(', ')}`);
  for (const p of r.pins) lines.push(`  removed pin ${p}`);
  if (r.files.length) lines.push(`  removed ${r.files.join(', ')}`);
  if (lines.length === 1) lines.push('  nothing to remove');
  return lines.join('\n');
}

function renderStatus(s: LabStatus): string {
  if (!s.present) return `lab ${s.prefix}: not up (\`pinhole lab up\` or \`pinhole demo --keep\`)`;
  const present = s.namespaces.filter((n) => n.present).length;
  const head = `lab ${s.prefix}: ${s.up ? 'up' : 'incomplete (run `pinhole lab down`)'}, ${present} of ${s.namespaces.length} namespaces${
    s.demo ? `, demo running (pid ${s.demo.pid})` : ''
  }`;
  const rows: string[][] = [];
  for (const n of s.namespaces) {
    if (!n.present) {
      rows.push([n.name, n.role, '-', 'absent', '', '']);
      continue;
    }
    for (const i of n.interfaces) {
      rows.push([
        n.name,
        n.role,
        i.name,
        i.state,
        i.addresses.join(' ') || '-',
        i.xdp.map((x) => `${x.id}${x.name ? ` ${x.name}` : ''}`).join(', '),
      ]);
    }
  }
  const nodes = s.nodes.map((n) => [
    `node ${n.node}`,
    n.ns,
    n.configExists ? n.config : `${n.config} (missing)`,
    n.pinhole.length ? `running (pid ${n.pinhole.map((p) => p.pid).join(', ')})` : 'not running',
    n.socketExists ? n.socket : '-',
  ]);
  return [
    head,
    '',
    table(['namespace', 'role', 'interface', 'state', 'addresses', 'xdp'], rows),
    '',
    table(['node', 'namespace', 'config', 'pinhole', 'api socket'], nodes),
    ...(s.pins.length ? ['', `pins: ${s.pins.join(', ')}`] : []),
  ].join('\n');
}
