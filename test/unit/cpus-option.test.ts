/**
 * `--cpus LIST` of `pinhole uplink` (and the parser it shares with nothing else: the config's
 * `uplink.cpus` is checked by the schema, test/unit/config.test.ts): malformed lists are usage
 * errors (exit 2) before anything is set up.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import { parseCpus } from '../../src/control/args.ts';
import { main } from '../../src/control/cli.ts';
import type { CommandIO } from '../../src/control/io.ts';

test('parseCpus: comma-separated CPU numbers, in the order given', () => {
  assert.deepEqual(parseCpus('1'), [1]);
  assert.deepEqual(parseCpus('3,2'), [3, 2]);
  assert.deepEqual(parseCpus('0,1023'), [0, 1023]);
});

for (const bad of ['', '1,', ',1', '1,1', '-1', '1024', '1.5', 'a', '1 2', '0x1']) {
  test(`pinhole uplink --cpus ${JSON.stringify(bad)} is a usage error (exit 2, nothing set up)`, async () => {
    let out = '';
    let err = '';
    const io: CommandIO = { out: (s) => void (out += `${s}\n`), err: (s) => void (err += `${s}\n`) };
    const code = await main(['uplink', '--iface', 'ph-no-if0', `--cpus=${bad}`], io);
    assert.equal(code, 2, err);
    assert.match(err, /^pinhole: ERR_CLI_USAGE: --cpus .*: CPU numbers 0\.\.1023, comma-separated, none twice/);
    assert.equal(out, '');
  });
}
