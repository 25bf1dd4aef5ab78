/**
 * `pinhole bench`'s CPU busy figures without privileges: /proc/stat parsing (busy = total less
 * idle and iowait, steal counted as busy, guest time not counted twice), the busy share between
 * two readings less a worker's polling, and the report's note naming the runs whose forwarder's
 * CPU had room to spare.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busyShare, parseProcStat } from '../../src/control/bench/cpu-busy.ts';
import { FWD_BUSY_METRIC, GEN_BUSY_METRIC, headroomNote, renderMarkdown, result, type Better } from '../../src/control/bench/report.ts';

const STAT = [
  'cpu  300 0 200 1000 10 0 90 5 40 0',
  'cpu0 100 0 100 500 5 0 80 5 40 0',
  'cpu1 200 0 100 500 5 0 10 0 0 0',
  'intr 12345 0 0',
  'ctxt 999',
  'cpu2 1 2 3', // too few fields: ignored
  'cpu3 1 2 x 4', // not numbers: ignored
].join('\n');

test('parseProcStat: per-CPU busy and total ticks; the aggregate line, short and malformed lines left out', () => {
  const m = parseProcStat(STAT);
  assert.deepEqual([...m.keys()], [0, 1]);
  // cpu0: user 100 + system 100 + softirq 80 + steal 5 = 285 busy; idle 500 + iowait 5; guest (40) is inside user.
  assert.deepEqual(m.get(0), { busy: 285, total: 790 });
  assert.deepEqual(m.get(1), { busy: 310, total: 815 });
});

test('parseProcStat: a kernel that prints only user nice system idle', () => {
  assert.deepEqual(parseProcStat('cpu0 1 2 3 4\n').get(0), { busy: 6, total: 10 });
});

test('busyShare: the busy share between readings, less polling time; undefined without both readings or ticks', () => {
  const a = parseProcStat('cpu0 100 0 0 100 0 0 0 0 0 0\ncpu1 0 0 0 200 0 0 0 0 0 0\n');
  const b = parseProcStat('cpu0 160 0 10 120 10 0 0 0 0 0\ncpu1 0 0 50 250 0 0 0 0 0 0\n');
  // cpu0: busy +70 of +100 ticks.
  assert.equal(busyShare(a, b, 0), 0.7);
  assert.equal(busyShare(a, b, 1), 0.5);
  // 0.3 s of a 1.5 s window spent polling: 0.7 - 0.2.
  assert.ok(Math.abs(busyShare(a, b, 0, { seconds: 1.5, lessSeconds: 0.3 })! - 0.5) < 1e-12);
  // Never below 0 or above 1.
  assert.equal(busyShare(a, b, 1, { seconds: 1, lessSeconds: 2 }), 0);
  assert.equal(busyShare(a, b, 2), undefined);
  assert.equal(busyShare(a, a, 0), undefined);
});

const key = (scenario: string, mode: 'afxdp' | 'c' | 'kernel' | 'auto', metric: string, better: Better = 'neither') => ({
  scenario,
  mode,
  metric,
  unit: '%',
  better,
});

test('headroomNote: names each run whose forwarder CPU median stayed below 90% while the generator was at 90% or more', () => {
  const results = [
    result(key('vxlan', 'afxdp', GEN_BUSY_METRIC), [99, 99.4]),
    result(key('vxlan', 'afxdp', FWD_BUSY_METRIC), [30, 38]),
    result(key('vxlan', 'auto', GEN_BUSY_METRIC), [90]), // exactly at the mark: saturated
    result(key('vxlan', 'auto', FWD_BUSY_METRIC), [25]),
    result(key('cross-connect', 'c', GEN_BUSY_METRIC), [97]),
    result(key('cross-connect', 'c', FWD_BUSY_METRIC), [80, 99]), // median 89.5: room to spare
    result(key('cross-connect', 'afxdp', GEN_BUSY_METRIC), [97]),
    result(key('cross-connect', 'afxdp', FWD_BUSY_METRIC), [90]), // exactly at the mark: the forwarder bounded it
    result(key('vxlan', 'kernel', GEN_BUSY_METRIC), [99]),
    result(key('vxlan', 'kernel', FWD_BUSY_METRIC), [1]), // forwards on the generator's CPU
    result(key('receive-drop', 'c', GEN_BUSY_METRIC), [89.9]), // neither CPU saturated: no claim
    result(key('receive-drop', 'c', FWD_BUSY_METRIC), [20]),
    result(key('receive-drop', 'afxdp', FWD_BUSY_METRIC), [20]), // no generator figure: no claim
  ];
  const note = headroomNote(results)!;
  assert.match(note, /vxlan afxdp \(forwarder's CPU 34\.0% busy, generator's 99\.2%\)/);
  assert.match(note, /vxlan auto \(forwarder's CPU 25\.0% busy, generator's 90\.0%\)/);
  assert.match(note, /cross-connect c \(forwarder's CPU 89\.5% busy, generator's 97\.0%\)/);
  assert.doesNotMatch(note, /cross-connect afxdp|vxlan kernel|receive-drop/);
});

test('headroomNote: nothing when every forwarder was busy, or the figures are missing or skipped', () => {
  assert.equal(headroomNote([]), undefined);
  assert.equal(
    headroomNote([result(key('x', 'afxdp', GEN_BUSY_METRIC), [99]), result(key('x', 'afxdp', FWD_BUSY_METRIC), [95])]),
    undefined,
  );
  assert.equal(
    headroomNote([result(key('x', 'afxdp', GEN_BUSY_METRIC), [99]), result(key('x', 'afxdp', FWD_BUSY_METRIC), { skipped: 'no cc' })]),
    undefined,
  );
});

test('renderMarkdown: the CPU busy rows have no arrow (a reading, not a score) and no ratio column', () => {
  const md = renderMarkdown({
    machine: { cpuModel: 'cpu', cpus: 2, kernel: '6.18', node: 'v20', date: 'd', loadAverage: 0, memoryGiB: 1 },
    quick: true,
    runs: 1,
    elapsedSeconds: 1,
    notes: [],
    results: [
      result(key('vxlan', 'afxdp', FWD_BUSY_METRIC), [30]),
      result(key('vxlan', 'kernel', FWD_BUSY_METRIC), [1]),
      result(key('vxlan', 'afxdp', 'CPU per packet, 64 B steady', 'lower'), [2000]),
      result(key('vxlan', 'auto', 'CPU per packet, 64 B steady', 'lower'), [1000]),
    ],
  });
  assert.match(
    md,
    /\| vxlan \| CPU busy, forwarder's CPU, 64 B steady \| % \| 30\.0 \(30\.0–30\.0\) \|  \| 1\.00 \(1\.00–1\.00\) \|  \|\n/,
  );
  assert.match(md, /\| vxlan \| CPU per packet, 64 B steady \| % ↓ \|[^\n]*2\.00× auto/);
  assert.match(md, /no arrow: a reading, not a score/);
});
