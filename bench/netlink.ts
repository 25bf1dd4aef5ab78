/**
 * rtnetlink mirror benchmark. Creates its own network namespace (removed on exit), runs the
 * measurements in a child inside it (`ip netns exec`), and prints min/median/max over REPEATS.
 *
 *   node --import tsx bench/netlink.ts [--neighbours 10000] [--repeats 5] [--json]
 *
 * Metrics:
 *  - events/s end-to-end: `ip -batch` rewrites N permanent neighbours (new MACs); time from the
 *    batch's start until the mirror has applied all N notifications (includes the kernel and ip).
 *  - events/s apply only: decode + apply of N captured RTM_NEWNEIGH messages, no I/O (the
 *    mirror's own cost per notification, shared-table write included).
 *  - full resync: dump links, addresses, routes and N neighbours and replace every table.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    neighbours: { type: 'string', default: '10000' },
    repeats: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    inner: { type: 'boolean', default: false },
  },
});
const N = Number(values.neighbours);
const REPEATS = Math.max(5, Number(values.repeats));

interface Sample {
  name: string;
  unit: string;
  values: number[];
}

const ip = (i: number): string => `198.18.${64 + (i >> 8)}.${i & 0xff}`;
const mac = (i: number, v: number): string =>
  `02:${(v & 0xff).toString(16).padStart(2, '0')}:00:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

async function inner(): Promise<Sample[]> {
  const { Mirror } = await import('../src/netlink/mirror.ts');
  const { MirrorTables, parseUpdate } = await import('../src/netlink/tables.ts');
  const { RtnlSocket } = await import('../src/netlink/socket.ts');
  const { dumpRequest, RTM_GETNEIGH, RTM_NEWNEIGH, AF_UNSPEC } = await import('../src/netlink/rtnl.ts');

  const batch = (v: number): void => {
    const lines: string[] = [];
    for (let i = 0; i < N; i++) lines.push(`neigh replace ${ip(i)} dev bn0 lladdr ${mac(i, v)} nud permanent`);
    execFileSync('ip', ['-batch', '-'], { input: `${lines.join('\n')}\n`, maxBuffer: 1 << 26 });
  };
  batch(0);

  const m = await Mirror.open({ rcvbuf: 64 << 20, neighbourCapacity: 1 << 15 });
  const e2e: number[] = [];
  const resync: number[] = [];
  const apply: number[] = [];
  try {
    const bn0 = [...m.tables.links.values()].find((l) => l.name === 'bn0')!.index;
    for (let r = 1; r <= REPEATS; r++) {
      const marker = `02:${r.toString(16).padStart(2, '0')}:`;
      let have = 0;
      const done = new Promise<void>((resolve) => {
        const off = m.onChange((e) => {
          if (e.table === 'neigh' && e.entry.ifindex === bn0 && e.entry.mac?.startsWith(marker)) have++;
          else if (e.table === 'resync') {
            have = 0;
            for (const n of m.tables.neighbours.values()) if (n.ifindex === bn0 && n.mac?.startsWith(marker)) have++;
          }
          if (have >= N) {
            off();
            resolve();
          }
        });
      });
      const t0 = performance.now();
      batch(r);
      await done;
      e2e.push(N / ((performance.now() - t0) / 1000));
    }
    for (let r = 0; r < REPEATS; r++) {
      const t0 = performance.now();
      await m.resync('bench');
      resync.push(performance.now() - t0);
    }
    if (m.counters.overflows) process.stderr.write(`note: ${m.counters.overflows} overflows (ENOBUFS) during the run\n`);
  } finally {
    await m.close();
  }

  // Apply-only: capture the kernel's RTM_NEWNEIGH messages once, then feed them as notifications.
  const s = RtnlSocket.open();
  const msgs = (await s.dump(dumpRequest(RTM_GETNEIGH, AF_UNSPEC))).filter((x) => x.type === RTM_NEWNEIGH);
  s.close();
  for (let r = 0; r < REPEATS; r++) {
    const t = new MirrorTables({ neighbourCapacity: 1 << 15 });
    const t0 = performance.now();
    t.shared.begin();
    for (const x of msgs) {
      const u = parseUpdate(x);
      if (u) t.apply(u);
    }
    t.shared.end();
    apply.push(msgs.length / ((performance.now() - t0) / 1000));
  }
  return [
    { name: `events/s end-to-end (${N} neighbour replaces via ip -batch)`, unit: 'events/s', values: e2e },
    { name: `events/s apply only (${msgs.length} RTM_NEWNEIGH, decode+apply)`, unit: 'events/s', values: apply },
    { name: `full resync (${N} neighbours)`, unit: 'ms', values: resync },
  ];
}

function stats(v: number[]): { min: number; median: number; max: number } {
  const s = [...v].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { min: s[0]!, median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, max: s[s.length - 1]! };
}

function fmt(x: number): string {
  return x >= 1000 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1);
}

if (values.inner) {
  const samples = await inner();
  process.stdout.write(`${JSON.stringify(samples)}\n`);
} else {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench/netlink.ts needs root (it creates a network namespace)\n');
    process.exit(1);
  }
  const ns = `ph-bench-nl-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const run = (...a: string[]): void => {
      execFileSync('ip', ['-n', ns, ...a]);
    };
    run('link', 'set', 'lo', 'up');
    run('link', 'add', 'bn0', 'type', 'veth', 'peer', 'name', 'bn1');
    run('link', 'set', 'bn0', 'up');
    run('link', 'set', 'bn1', 'up');
    const me = fileURLToPath(import.meta.url);
    const r = spawnSync(
      'ip',
      ['netns', 'exec', ns, process.execPath, '--import', 'tsx', me, '--inner', '--neighbours', String(N), '--repeats', String(REPEATS)],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 24,
      },
    );
    if (r.status !== 0) throw new Error(`bench child failed (${r.status})`);
    const samples = JSON.parse(r.stdout.trim().split('\n').pop()!) as Sample[];
    if (values.json) {
      process.stdout.write(`${JSON.stringify(samples.map((s) => ({ ...s, ...stats(s.values) })))}\n`);
    } else {
      const rows = samples.map((s) => {
        const st = stats(s.values);
        return [s.name, s.unit, fmt(st.min), fmt(st.median), fmt(st.max)];
      });
      const head = ['metric', 'unit', 'min', 'median', 'max'];
      const w = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
      const line = (c: string[]): string => c.map((x, i) => (i >= 2 ? x.padStart(w[i]!) : x.padEnd(w[i]!))).join('  ');
      process.stdout.write(`rtnetlink mirror, ${REPEATS} repeats\n${line(head)}\n${rows.map(line).join('\n')}\n`);
    }
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}
