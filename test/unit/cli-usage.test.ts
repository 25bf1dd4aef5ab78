/**
 * The CLI's contract with scripts, without privileges: `<command> --help` prints that command's
 * synopsis and exits 0; every kind of bad command-line input exits 2 (README, Errors) before
 * anything is set up — timer values that would overflow setTimeout, a non-numeric queue, an
 * empty interface name, the uplink cross-connected to itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitCodeFor, main } from '../../src/control/cli.ts';
import type { CommandIO } from '../../src/control/io.ts';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: CommandIO = { out: (s) => void (out += `${s}\n`), err: (s) => void (err += `${s}\n`) };
  const code = await main(argv, io);
  return { code, out, err };
}

// An Ethernet + IPv4 + UDP frame to port 4789 (42 bytes), as hex.
const FRAME = '020000000001020000000002080045000034000000004011000000c6120002c61200019c4012b5002000000000';

for (const cmd of ['probe', 'bpf', 'uplink', 'neigh', 'routes', 'resolve']) {
  test(`pinhole ${cmd} --help prints its usage and exits 0`, async () => {
    for (const flag of ['--help', '-h']) {
      const r = await cli(cmd, flag);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`^usage: pinhole ${cmd}\\b`));
      assert.equal(r.err, '');
    }
  });
}

test('--help anywhere before `--` wins over other options', async () => {
  const r = await cli('uplink', '--iface', 'ph-no-if0', '--stats-interval', '1', '--help');
  assert.equal(r.code, 0);
  assert.match(r.out, /--stats-interval MS/);
});

test('no command is a usage error (exit 2, usage on stderr); `pinhole --help` exits 0', async () => {
  const none = await cli();
  assert.equal(none.code, 2);
  assert.match(none.err, /^usage: pinhole <command>/);
  assert.equal(none.out, '');
  const help = await cli('--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /^usage: pinhole <command>/);
});

const USAGE_ERRORS: { args: string[]; code: string; message?: RegExp }[] = [
  { args: ['frobnicate'], code: 'ERR_CLI_USAGE' },
  { args: ['uplink', '--iface', 'ph-no-if0', '--bogus'], code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' },
  // 2^31 ms and more overflow setInterval into 1 ms.
  {
    args: ['uplink', '--iface', 'ph-no-if0', '--stats-interval', '2147483648'],
    code: 'ERR_CLI_USAGE',
    message: /--stats-interval 2147483648/,
  },
  { args: ['uplink', '--iface', 'ph-no-if0', '--stats-interval', '1e12'], code: 'ERR_CLI_USAGE', message: /--stats-interval/ },
  { args: ['uplink', '--iface', 'ph-no-if0', '--stats-interval', '9'], code: 'ERR_CLI_USAGE', message: /--stats-interval/ },
  { args: ['uplink', '--iface', 'ph-no-if0', '--to', 'ph-no-if0'], code: 'ERR_CLI_USAGE', message: /--to ph-no-if0 is the uplink itself/ },
  { args: ['uplink', '--iface', 'ph-no-if0', '--to', ''], code: 'ERR_CLI_USAGE', message: /--to needs an interface name/ },
  { args: ['uplink', '--iface', 'ph-no-if0', '--queues', '2x'], code: 'ERR_CLI_USAGE', message: /--queues/ },
  { args: ['uplink', '--iface', ''], code: 'ERR_CLI_USAGE' },
  { args: ['uplink', '--iface', 'ph-no-if0', '--port', '99999'], code: 'ERR_CLI_PORT' },
  { args: ['probe', '--iface', ''], code: 'ERR_CLI_USAGE', message: /--iface needs an interface name/ },
  { args: ['bpf', 'test', '--port', '4789', '--frame', FRAME, '--queue', 'abc'], code: 'ERR_CLI_USAGE', message: /--queue abc/ },
  { args: ['bpf', 'test', '--port', '4789', '--frame', FRAME, '--queue', '-1'], code: 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' },
  { args: ['bpf', 'test', '--port', '4789', '--frame', FRAME, '--queue', '4294967296'], code: 'ERR_CLI_USAGE' },
  { args: ['bpf', 'test', '--port', '4789', '--frame', 'abc'], code: 'ERR_CLI_FRAME' },
  { args: ['bpf', 'test', '--port', '4789', '--frame', '0011'], code: 'ERR_CLI_FRAME' },
  { args: ['bpf', 'dump', '--address', 'not-an-ip'], code: 'ERR_CLI_ADDRESS' },
  { args: ['bpf', 'frob'], code: 'ERR_CLI_USAGE' },
  // An argument that is not an address is a usage error, as for `bpf --address` (a well-formed
  // address that has no next hop — own, multicast, ... — is refused by the resolver: exit 1).
  { args: ['resolve', 'notanip'], code: 'ERR_CLI_ADDRESS', message: /resolve notanip: not an IPv4 or IPv6 address/ },
  { args: ['resolve', ''], code: 'ERR_CLI_ADDRESS' },
  { args: ['resolve', '198.18.0.300'], code: 'ERR_CLI_ADDRESS' },
  { args: ['resolve'], code: 'ERR_CLI_USAGE' },
  { args: ['resolve', '198.18.0.1', '198.18.0.2'], code: 'ERR_CLI_USAGE' },
  { args: ['resolve', '198.18.0.1', '--timeout', '2147483648'], code: 'ERR_CLI_USAGE', message: /--timeout 2147483648/ },
  { args: ['resolve', '198.18.0.1', '--timeout', '0'], code: 'ERR_CLI_USAGE', message: /--timeout 0/ },
  { args: ['resolve', '198.18.0.1', '--timeout', '5s'], code: 'ERR_CLI_USAGE', message: /--timeout 5s/ },
  // An empty interface name is a usage error (like `probe --iface ""`), not ERR_IFACE_NOT_FOUND.
  { args: ['neigh', '--dev', ''], code: 'ERR_CLI_USAGE', message: /--dev needs an interface name/ },
  { args: ['neigh', '--watch', '--dev', ' '], code: 'ERR_CLI_USAGE', message: /--dev needs an interface name/ },
  { args: ['neigh', '--family', '5'], code: 'ERR_CLI_USAGE', message: /--family/ },
  { args: ['probe', '--iface', ' '], code: 'ERR_CLI_USAGE', message: /--iface needs an interface name/ },
];

for (const c of USAGE_ERRORS) {
  test(`usage error exits 2: pinhole ${c.args.map((a) => (a === '' ? '""' : a)).join(' ')}`, async () => {
    const r = await cli(...c.args);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, new RegExp(`^pinhole: ${c.code}: `));
    if (c.message) assert.match(r.err, c.message);
    assert.equal(r.out, '');
  });
}

test('exit codes by error code: ERR_CLI_* and ERR_PARSE_ARGS_* are 2, the rest 1', () => {
  for (const c of ['ERR_CLI_USAGE', 'ERR_CLI_PORT', 'ERR_CLI_ADDRESS', 'ERR_CLI_FRAME', 'ERR_PARSE_ARGS_UNKNOWN_OPTION'])
    assert.equal(exitCodeFor(c), 2, c);
  for (const c of ['ERR_PERMISSION', 'ERR_IFACE_NOT_FOUND', 'ERR_CONFIG_QUEUES', 'ERR_UPLINK_BUSY']) assert.equal(exitCodeFor(c), 1, c);
});
