/**
 * Test namespaces never outlive their test process: every privileged test file sweeps the
 * `ph-<pid>-...` namespaces it leaves, on a normal exit, after an uncaught throw in setup, and on
 * SIGTERM (what node:test sends a file that runs past its timeout). A fixture leaks on purpose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';

requireRoot();

const LEAK = fileURLToPath(new URL('./fixtures/leak-netns.ts', import.meta.url));
const netns = (): string[] =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!);

function run(mode: string): {
  child: ReturnType<typeof spawn>;
  first: Promise<string>;
  done: Promise<{ out: string; code: number | null }>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', LEAK, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let gotFirst!: (l: string) => void;
  const first = new Promise<string>((r) => (gotFirst = r));
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('\n')) gotFirst(out.split('\n')[0]!);
  });
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<{ out: string; code: number | null }>((r) => child.once('close', (code) => r({ out, code })));
  return { child, first, done };
}

test('a namespace left by a throw during setup is removed when the process exits', async () => {
  const r = run('throw');
  const name = await r.first;
  const { out, code } = await r.done;
  assert.notEqual(code, 0, out);
  assert.ok(!netns().includes(name), `${name} left behind:\n${out}`);
  assert.match(out, /removed leftover network namespace/);
});

test('a namespace held when SIGTERM arrives (a test timeout) is removed', async () => {
  const r = run('wait');
  const name = await r.first;
  assert.ok(netns().includes(name));
  r.child.kill('SIGTERM');
  const { out } = await r.done;
  assert.ok(!netns().includes(name), `${name} left behind:\n${out}`);
});

test('twoHosts removes both namespaces when a setup step fails', async () => {
  const r = run('hosts');
  const { out } = await r.done;
  assert.match(out, /twoHosts threw/);
  const pid = r.child.pid!;
  assert.deepEqual(
    netns().filter((n) => n.startsWith(`ph-${pid}-`)),
    [],
  );
  assert.doesNotMatch(out, /removed leftover/, 'nothing was left for the sweep');
});
