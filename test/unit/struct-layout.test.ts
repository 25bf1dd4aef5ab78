/**
 * Pins every declared kernel struct layout (src/sys/struct.ts registry) to the system's UAPI
 * headers: a C probe printing sizeof/offsetof is compiled with gcc and compared with ours.
 * Unprivileged; needs gcc and linux-libc-dev (installed by .ci/run).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { declaredLayouts } from '../../src/sys/index.ts';
// Importing the modules registers their layouts.
import '../../src/kernel/bpf-attr.ts';
import '../../src/kernel/iface.ts';
import '../../src/netlink/rtnl.ts';
import '../../src/netlink/codec.ts';
import '../../src/uplink/xsk/abi.ts';
import '../../src/uplink/afpacket/index.ts'; // + sock_filter/sock_fprog (bpf/cbpf)

test('declared struct layouts match the kernel UAPI headers', () => {
  const layouts = declaredLayouts();
  assert.ok(layouts.length >= 10, `expected the bpf, ethtool and netlink layouts, got ${layouts.length}`);
  const headers = [...new Set(layouts.map((l) => l.header))];
  const lines: string[] = [];
  const expected: string[] = [];
  for (const l of layouts) {
    if (l.checkSize) {
      lines.push(`printf("${l.name} size %zu\\n", sizeof(${l.cType}));`);
      expected.push(`${l.name} size ${l.size}`);
    }
    for (const f of l.fields) {
      if (f.name === 'pad' || f.name.startsWith('_')) continue;
      lines.push(`printf("${l.name}.${f.name} %zu\\n", offsetof(${l.cType}, ${l.cPrefix}${f.name}));`);
      expected.push(`${l.name}.${f.name} ${f.offset}`);
    }
  }
  const src = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <sys/socket.h>',
    ...headers.map((h) => `#include <${h}>`),
    'int main(void) {',
    ...lines,
    'return 0; }',
  ].join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'ph-layout-'));
  try {
    writeFileSync(join(dir, 'probe.c'), src);
    execFileSync('gcc', ['-o', join(dir, 'probe'), join(dir, 'probe.c')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const got = execFileSync(join(dir, 'probe'), { encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(got, expected);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
