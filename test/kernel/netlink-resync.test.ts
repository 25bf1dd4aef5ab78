/**
 * The mirror after lost notifications (issue 7, items 2 and 8), against the real kernel.
 *
 * The reader is stopped (SIGSTOP) while `ip -batch` adds 2,000 neighbours (a quarter IPv6),
 * changes the MAC of some and deletes 1,000 — far more than the subscription's receive buffer holds, so the kernel
 * drops notifications and reports ENOBUFS. After SIGCONT the mirror must resync and then equal
 * `ip -j neigh show` exactly: its own table, the shared table the workers read, and a consumer
 * that rebuilt the table from the change events alone (`onChange`, and `neigh --watch --json`).
 * The first add notifications are the ones still queued when the buffer fills, and their
 * neighbours are the ones deleted: replaying them on top of the fresh dump would resurrect them.
 * The namespace is kept from creating neighbours by itself (`quietNeighbours`), so the kernel's
 * table changes only when the test changes it and the comparisons are exact, not eventual.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns, type Netns } from '../helpers/netns.ts';
import { PINHOLE_BIN } from '../helpers/cli.ts';
import { nudStateName } from '../../src/netlink/rtnl.ts';
import { ROOT, kernelNeighbours, neighLine, quietNeighbours, stopProcess, withMirror, type MirrorChild } from './netlink-mirror-proc.ts';

const N = 2000;
const hex = (v: number): string => v.toString(16).padStart(2, '0');
/** Every 4th neighbour is IPv6. */
const ipOf = (round: number, i: number): string =>
  i % 4 === 3 ? `2001:db8:${round}::${i.toString(16)}` : `198.18.${100 + round * 8 + (i >> 8)}.${i & 0xff}`;
const macOf = (round: number, i: number, v = 1): string => `02:${hex(v)}:${hex(round)}:00:${hex(i >> 8)}:${hex(i & 0xff)}`;

/**
 * One round's batch: add N, change the MAC of every 4th of the second half, delete the first
 * half, then delete what the previous round left. Returns the addresses deleted.
 */
function churn(ns: Netns, round: number): string[] {
  const cmds: string[] = [];
  const deleted: string[] = [];
  for (let i = 0; i < N; i++) cmds.push(`neigh add ${ipOf(round, i)} dev ph0 lladdr ${macOf(round, i)} nud permanent`);
  for (let i = N / 2; i < N; i += 4) cmds.push(`neigh replace ${ipOf(round, i)} dev ph0 lladdr ${macOf(round, i, 2)} nud permanent`);
  for (let i = 0; i < N / 2; i++) {
    cmds.push(`neigh del ${ipOf(round, i)} dev ph0`);
    deleted.push(ipOf(round, i));
  }
  if (round > 0) {
    for (let i = N / 2; i < N; i++) {
      cmds.push(`neigh del ${ipOf(round - 1, i)} dev ph0`);
      deleted.push(ipOf(round - 1, i));
    }
  }
  execFileSync('ip', ['-n', ns.name, '-batch', '-'], { input: `${cmds.join('\n')}\n` });
  return deleted;
}

/**
 * Waits for the resync after `before`, then compares with `ip -j neigh show` in `ns`: the mirror's
 * table, the event consumer's, and the shared table (every entry, no deleted one, same count).
 */
async function expectKernelTables(
  ns: Netns,
  m: MirrorChild,
  round: number,
  before: { resyncs: number; overflows: number },
  deleted: string[],
): Promise<void> {
  const after = await m.ask({ cmd: 'wait-resync', after: before.resyncs });
  const kernel = kernelNeighbours(ns);
  const expected = kernel.map(neighLine).sort();
  assert.ok(after.overflows > before.overflows, `round ${round}: the kernel reported ENOBUFS`);
  assert.equal(kernel.length, N / 2, `round ${round}: kernel count`);
  const extra = (after.neighbours as string[]).filter((x) => !expected.includes(x));
  const missing = expected.filter((x) => !(after.neighbours as string[]).includes(x));
  assert.deepEqual(
    { extra: extra.length, missing: missing.length, sample: [...extra.slice(0, 3), ...missing.slice(0, 3)] },
    { extra: 0, missing: 0, sample: [] },
    `round ${round}: the mirror equals the kernel`,
  );
  assert.deepEqual(after.consumer, expected, `round ${round}: a consumer of the change events equals the kernel`);

  // The shared table the workers read: every kernel entry with its state and MAC, no deleted one, same count.
  const keys = [...kernel.map((n) => ({ dev: n.dev, ip: n.ip })), ...deleted.map((ip) => ({ dev: 'ph0', ip }))];
  const shared = await m.ask({ cmd: 'shared-lookup', keys });
  assert.equal(shared.count, kernel.length, `round ${round}: shared table count`);
  const bad: string[] = [];
  kernel.forEach((n, i) => {
    const r = shared.results[i];
    if (r.state < 0 || nudStateName(r.state) !== n.state || (n.mac && r.mac !== n.mac)) bad.push(`${neighLine(n)} → ${JSON.stringify(r)}`);
  });
  deleted.forEach((ip, j) => {
    const r = shared.results[kernel.length + j];
    if (r.state !== -1) bad.push(`deleted ${ip} → ${JSON.stringify(r)}`);
  });
  assert.deepEqual(bad.slice(0, 5), [], `round ${round}: shared table`);
}

for (const rcvbuf of [undefined, 16384]) {
  test(`stopped reader (rcvbuf ${rcvbuf ?? 'default'}): after the overflow resync the mirror, its shared table and an event consumer equal the kernel, 3 rounds`, async () => {
    requireRoot();
    await withNetns(['nl-stop'], async (ns) => {
      quietNeighbours(ns);
      addVeth(ns, 'ph0', ns, 'ph1');
      await withMirror(ns, rcvbuf, async (m) => {
        for (let round = 0; round < 3; round++) {
          const before = await m.ask({ cmd: 'stats' });
          await m.stop();
          let deleted: string[];
          try {
            deleted = churn(ns, round);
          } finally {
            m.resume();
          }
          await expectKernelTables(ns, m, round, before.counters, deleted);
        }
      });
    });
  });
}

test('busy main thread (event loop blocked, poll thread free): the same exactness after the overflow, 3 rounds', async () => {
  requireRoot();
  const dir = mkdtempSync(join(tmpdir(), 'pinhole-busy-'));
  try {
    await withNetns(['nl-busy'], async (ns) => {
      quietNeighbours(ns);
      addVeth(ns, 'ph0', ns, 'ph1');
      await withMirror(ns, undefined, async (m) => {
        for (let round = 0; round < 3; round++) {
          const before = await m.ask({ cmd: 'stats' });
          const file = join(dir, `go-${round}`);
          assert.deepEqual(await m.ask({ cmd: 'block-until', file }), { blocked: true });
          let deleted: string[];
          try {
            deleted = churn(ns, round);
          } finally {
            writeFileSync(file, '');
          }
          assert.deepEqual(await m.next(), { unblocked: true });
          await expectKernelTables(ns, m, round, before.counters, deleted);
        }
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('neigh --watch --json, stopped through an overflow: the streamed events rebuild the kernel table exactly', async () => {
  requireRoot();
  await withNetns(['nl-watch'], async (ns) => {
    quietNeighbours(ns);
    addVeth(ns, 'ph0', ns, 'ph1');
    const watch = spawn('ip', ['netns', 'exec', ns.name, process.execPath, PINHOLE_BIN, 'neigh', '--watch', '--json'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    watch.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => watch.once('exit', (code) => res(code)));
    try {
      const lines = createInterface({ input: watch.stdout! })[Symbol.asyncIterator]();
      const table = new Map<string, string>();
      const key = (e: any): string => `${e.dev}|${e.ip}`;
      const apply = (e: any): void => {
        if (e.event === 'present' || e.event === 'add' || e.event === 'update') table.set(key(e), `${e.mac ?? '-'}|${e.state}`);
        else if (e.event === 'del') table.delete(key(e));
      };
      const next = async (): Promise<any> => {
        const r = await lines.next();
        if (r.done) throw new Error(`neigh --watch exited: ${stderr}`);
        return JSON.parse(r.value as string);
      };
      // A marker entry proves the watch is live before it is stopped.
      ns.ip('neigh', 'add', '198.18.99.1', 'dev', 'ph0', 'lladdr', '02:00:00:00:99:01', 'nud', 'permanent');
      for (let e = await next(); ; e = await next()) {
        apply(e);
        if (e.ip === '198.18.99.1') break;
      }
      for (let round = 0; round < 2; round++) {
        await stopProcess(watch);
        try {
          churn(ns, round);
        } finally {
          watch.kill('SIGCONT');
        }
        let e = await next();
        for (; e.event !== 'resync'; e = await next()) apply(e);
        const expected = kernelNeighbours(ns)
          .map((n) => `${n.dev}|${n.ip}|${n.mac ?? '-'}|${n.state}`)
          .sort();
        const got = [...table].map(([k, v]) => `${k}|${v}`).sort();
        assert.deepEqual(
          got.filter((x) => !expected.includes(x)).concat(expected.filter((x) => !got.includes(x))),
          [],
          `round ${round}: entries`,
        );
        assert.deepEqual(got, expected, `round ${round}: the stream consumer equals the kernel`);
        assert.equal(e.neighbours, expected.length);
      }
      watch.kill('SIGINT');
      assert.equal(await exited, 0, stderr);
    } finally {
      if (watch.exitCode === null && watch.signalCode === null) watch.kill('SIGKILL');
    }
  });
});
