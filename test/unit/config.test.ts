// Unit tests for src/config: the YAML configuration file — parsing, schema, semantic checks,
// error codes and field paths, tunnel port reference counting, reading files.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  loadConfig,
  parseConfig,
  SPIN_US_PINNED_DEFAULT,
  tunnelPorts,
  validateConfig,
  validateConnection,
  workerSpinUs,
  type ConfigErrorEntry,
  type PinholeConfig,
} from '../../src/config/index.ts';
import { PinholeError } from '../../src/sys/index.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/config/', import.meta.url));

/** Runs fn, asserts a PinholeError with `code`, returns it. */
function fails(fn: () => unknown, code: string): PinholeError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PinholeError, `expected PinholeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

function errorsOf(err: PinholeError): ConfigErrorEntry[] {
  return (err.details as { errors: ConfigErrorEntry[] }).errors;
}

const EXAMPLE = `uplink: { interface: eth0, mode: auto }
connections:
  - { name: pod-a, local: { interface: veth-a }, vxlan: { vni: 100, remote: 198.18.0.2, port: 4789 } }
  - { name: pod-b, local: { interface: veth-b }, vxlan: { vni: 200, remote: "2001:db8::2" } }
`;

/** The sections every parsed config has, with their defaults. */
const DEFAULTS = { api: { socket: '/run/pinhole/api.sock' }, log: { level: 'info' as const } };

const EXAMPLE_CONFIG: PinholeConfig = {
  ...DEFAULTS,
  uplink: { interface: 'eth0', mode: 'auto' },
  connections: [
    { name: 'pod-a', local: { interface: 'veth-a' }, vxlan: { vni: 100, remote: '198.18.0.2', family: 4, port: 4789, ttl: 64 } },
    { name: 'pod-b', local: { interface: 'veth-b' }, vxlan: { vni: 200, remote: '2001:db8::2', family: 6, port: 4789, ttl: 64 } },
  ],
};

/** A valid document as a plain object, for building error cases by mutation. */
function base(): Record<string, any> {
  return {
    uplink: { interface: 'eth0', mode: 'auto' },
    connections: [
      { name: 'pod-a', local: { interface: 'veth-a' }, vxlan: { vni: 100, remote: '198.18.0.2' } },
      { name: 'pod-b', local: { interface: 'veth-b' }, vxlan: { vni: 200, remote: '2001:db8::2' } },
    ],
  };
}

describe('config: valid documents', () => {
  it('parses the example to the typed object with defaults', () => {
    assert.deepEqual(parseConfig(EXAMPLE, 'pinhole.yaml'), EXAMPLE_CONFIG);
  });

  it('validateConfig gives the same result for the object form', () => {
    assert.deepEqual(validateConfig(base()), EXAMPLE_CONFIG);
  });

  it('api, metrics and log sections: defaults and errors name the field', () => {
    const bad = (doc: string, field: string): void => {
      assert.throws(
        () => parseConfig(`uplink: { interface: eth0 }\n${doc}\n`),
        (e: PinholeError) => e.code === 'ERR_CONFIG_INVALID' && e.message.includes(`${field}:`),
        doc,
      );
    };
    bad('api: { socket: relative.sock }', 'api.socket');
    bad('api: { sock: /x }', 'api.sock');
    bad('metrics: { listen: "9464" }', 'metrics.listen');
    bad('metrics: { listen: "127.0.0.1:99999" }', 'metrics.listen');
    bad('metrics: {}', 'metrics.listen');
    bad('log: { level: loud }', 'log.level');
    const ok = parseConfig('uplink: { interface: eth0 }\nmetrics: { listen: "[::1]:9464" }\n');
    assert.deepEqual(ok.metrics, { listen: '[::1]:9464' });
    assert.deepEqual(ok.api, DEFAULTS.api);
    assert.deepEqual(ok.log, DEFAULTS.log);
  });

  it('reads every field, canonicalises addresses', async () => {
    const cfg = await loadConfig(join(FIXTURES, 'full.yaml'));
    assert.deepEqual(cfg, {
      api: { socket: '/run/pinhole/test.sock' },
      metrics: { listen: '127.0.0.1:9464' },
      log: { level: 'debug' },
      uplink: {
        interface: 'ens5',
        mode: 'afxdp',
        tunnelAddress: '198.18.0.1',
        tunnelAddress6: '2001:db8::1',
        queues: 4,
        rings: { rx: 8192, tx: 1024 },
        cpus: [2, 3],
        spinUs: 500,
      },
      connections: [
        { name: 'pod-a', local: { interface: 'veth-a' }, vxlan: { vni: 0, remote: '198.18.0.2', family: 4, port: 8472, ttl: 255 } },
      ],
    });
  });

  it('loads the example fixture file', async () => {
    assert.deepEqual(await loadConfig(join(FIXTURES, 'example.yaml')), EXAMPLE_CONFIG);
  });

  it('canonicalises IPv6 remotes (RFC 5952)', () => {
    const doc = base();
    doc.connections[1].vxlan.remote = '2001:DB8:0:0:0:0:0:02';
    assert.equal(validateConfig(doc).connections[1].vxlan!.remote, '2001:db8::2');
  });

  const empties: Array<[string, string]> = [
    ['absent', 'uplink: { interface: eth0 }\n'],
    ['empty list', 'uplink: { interface: eth0 }\nconnections: []\n'],
    ['empty value', 'uplink: { interface: eth0 }\nconnections:\n'],
  ];
  for (const [what, text] of empties) {
    it(`connections ${what} → []`, () => {
      assert.deepEqual(parseConfig(text), { ...DEFAULTS, uplink: { interface: 'eth0', mode: 'auto' }, connections: [] });
    });
  }

  it('accepts edge values: vni 0 and 16777215, port 1 and 65535, ttl 1 and 255, queues 1 and 64', () => {
    const doc = base();
    doc.uplink.queues = 64;
    Object.assign(doc.connections[0].vxlan, { vni: 0, port: 1, ttl: 1 });
    Object.assign(doc.connections[1].vxlan, { vni: 16777215, port: 65535, ttl: 255 });
    const cfg = validateConfig(doc);
    assert.equal(cfg.uplink.queues, 64);
    assert.deepEqual(
      cfg.connections.map((c) => [c.vxlan!.vni, c.vxlan!.port, c.vxlan!.ttl]),
      [
        [0, 1, 1],
        [16777215, 65535, 255],
      ],
    );
  });

  it('allows the same remote and vni on different ports, and an IPv6 remote without tunnelAddress6', () => {
    const doc = base();
    doc.connections[1].vxlan = { vni: 100, remote: '198.18.0.2', port: 4790 };
    doc.connections.push({ name: 'pod-c', local: { interface: 'veth-c' }, vxlan: { vni: 7, remote: '2001:db8::7' } });
    assert.equal(validateConfig(doc).connections.length, 3);
  });
});

/** [description, mutate the base document, code, first field path, first message or undefined]. */
type Case = [string, (doc: Record<string, any>) => void, string, string?];

const INVALID: Case[] = [
  // VNI, port, ttl, queues, mode
  ['vni -1', (d) => (d.connections[1].vxlan.vni = -1), 'connections[1].vxlan.vni', 'must be an integer 0..16777215'],
  ['vni 16777216', (d) => (d.connections[1].vxlan.vni = 16777216), 'connections[1].vxlan.vni', 'must be an integer 0..16777215'],
  ['vni 1.5', (d) => (d.connections[1].vxlan.vni = 1.5), 'connections[1].vxlan.vni', 'must be an integer 0..16777215'],
  ['vni "100"', (d) => (d.connections[0].vxlan.vni = '100'), 'connections[0].vxlan.vni', 'must be an integer 0..16777215 (got a string)'],
  ['vni 1e300', (d) => (d.connections[0].vxlan.vni = 1e300), 'connections[0].vxlan.vni', 'must be an integer 0..16777215'],
  ['vni missing', (d) => delete d.connections[0].vxlan.vni, 'connections[0].vxlan.vni', 'is required'],
  ['port 0', (d) => (d.connections[0].vxlan.port = 0), 'connections[0].vxlan.port', 'must be an integer 1..65535'],
  ['port 65536', (d) => (d.connections[0].vxlan.port = 65536), 'connections[0].vxlan.port', 'must be an integer 1..65535'],
  ['port "4789"', (d) => (d.connections[0].vxlan.port = '4789'), 'connections[0].vxlan.port', 'must be an integer 1..65535 (got a string)'],
  ['ttl 0', (d) => (d.connections[0].vxlan.ttl = 0), 'connections[0].vxlan.ttl', 'must be an integer 1..255'],
  ['ttl 256', (d) => (d.connections[0].vxlan.ttl = 256), 'connections[0].vxlan.ttl', 'must be an integer 1..255'],
  ['queues 0', (d) => (d.uplink.queues = 0), 'uplink.queues', 'must be an integer 1..64'],
  ['queues 65', (d) => (d.uplink.queues = 65), 'uplink.queues', 'must be an integer 1..64'],
  ['cpus []', (d) => (d.uplink.cpus = []), 'uplink.cpus', 'must name at least one CPU'],
  ['cpus [-1]', (d) => (d.uplink.cpus = [-1]), 'uplink.cpus[0]', 'must be an integer 0..1023'],
  ['cpus [1, 1024]', (d) => (d.uplink.cpus = [1, 1024]), 'uplink.cpus[1]', 'must be an integer 0..1023'],
  ['cpus [1, 1]', (d) => (d.uplink.cpus = [1, 1]), 'uplink.cpus', 'must not name a CPU twice'],
  ['cpus 1', (d) => (d.uplink.cpus = 1), 'uplink.cpus', 'must be a list of CPU numbers (got a number)'],
  ['spinUs -1', (d) => (d.uplink.spinUs = -1), 'uplink.spinUs', 'must be an integer 0..10000000'],
  ['spinUs 10000001', (d) => (d.uplink.spinUs = 10_000_001), 'uplink.spinUs', 'must be an integer 0..10000000'],
  ['spinUs 2.5', (d) => (d.uplink.spinUs = 2.5), 'uplink.spinUs', 'must be an integer 0..10000000'],
  ['spinUs "500"', (d) => (d.uplink.spinUs = '500'), 'uplink.spinUs', 'must be an integer 0..10000000 (got a string)'],
  ['mode fast', (d) => (d.uplink.mode = 'fast'), 'uplink.mode', 'must be one of auto, afxdp, afpacket'],
  ['mode AUTO', (d) => (d.uplink.mode = 'AUTO'), 'uplink.mode', 'must be one of auto, afxdp, afpacket'],
  // unknown keys at every level
  ['unknown top-level key', (d) => (d.foo = 1), 'foo', "unknown key 'foo' (allowed: uplink, api, metrics, log, connections)"],
  [
    'unknown key in uplink',
    (d) => (d.uplink.foo = 1),
    'uplink.foo',
    "unknown key 'foo' (allowed: interface, mode, tunnelAddress, tunnelAddress6, queues, rings, cpus, spinUs)",
  ],
  [
    'unknown key in a connection',
    (d) => (d.connections[1].foo = 1),
    'connections[1].foo',
    "unknown key 'foo' (allowed: name, local, vxlan, wireguard)",
  ],
  [
    'unknown key in local',
    (d) => (d.connections[0].local.foo = 1),
    'connections[0].local.foo',
    "unknown key 'foo' (allowed: interface, mode)",
  ],
  ['bad local mode', (d) => (d.connections[0].local.mode = 'xdp'), 'connections[0].local.mode', 'must be one of auto, afxdp, afpacket'],
  [
    'unknown key in vxlan',
    (d) => (d.connections[0].vxlan.foo = 1),
    'connections[0].vxlan.foo',
    "unknown key 'foo' (allowed: vni, remote, port, ttl)",
  ],
  ['a key that needs quoting', (d) => (d.uplink['a b'] = 1), 'uplink["a b"]'],
  ['a __proto__ key', (d) => Object.defineProperty(d, '__proto__', { value: {}, enumerable: true }), '__proto__'],
  // missing or mistyped sections
  ['missing uplink', (d) => delete d.uplink, 'uplink', 'is required'],
  ['uplink a string', (d) => (d.uplink = 'eth0'), 'uplink', 'must be a mapping (got a string)'],
  ['uplink empty', (d) => (d.uplink = null), 'uplink', 'must be a mapping (got an empty value)'],
  ['missing uplink interface', (d) => delete d.uplink.interface, 'uplink.interface', 'is required'],
  ['missing local interface', (d) => delete d.connections[1].local.interface, 'connections[1].local.interface', 'is required'],
  ['missing local', (d) => delete d.connections[1].local, 'connections[1].local', 'is required'],
  ['missing name', (d) => delete d.connections[0].name, 'connections[0].name', 'is required'],
  ['connections a mapping', (d) => (d.connections = {}), 'connections', 'must be a list (got a mapping)'],
  ['connection a string', (d) => (d.connections[1] = 'pod-b'), 'connections[1]', 'must be a mapping (got a string)'],
  ['no tunnel', (d) => delete d.connections[1].vxlan, 'connections[1]', 'needs a tunnel: one of vxlan, wireguard'],
  // names
  ['name with capitals', (d) => (d.connections[0].name = 'Pod-A'), 'connections[0].name'],
  ['name ending in -', (d) => (d.connections[0].name = 'pod-'), 'connections[0].name'],
  ['name of 64 characters', (d) => (d.connections[0].name = 'a'.repeat(64)), 'connections[0].name'],
  ['duplicate names', (d) => (d.connections[1].name = 'pod-a'), 'connections[1].name', "duplicate name 'pod-a' (also connections[0])"],
  // interfaces
  ['interface of 16 bytes', (d) => (d.uplink.interface = 'a'.repeat(16)), 'uplink.interface'],
  ['interface of 15 bytes in 5 characters', (d) => (d.uplink.interface = 'ééééé'.repeat(2)), 'uplink.interface'],
  ['empty interface', (d) => (d.uplink.interface = ''), 'uplink.interface'],
  ['interface with /', (d) => (d.connections[0].local.interface = 'a/b'), 'connections[0].local.interface'],
  ['interface with :', (d) => (d.connections[0].local.interface = 'eth0:1'), 'connections[0].local.interface'],
  ['interface with a space', (d) => (d.connections[0].local.interface = 'veth a'), 'connections[0].local.interface'],
  ['interface .', (d) => (d.connections[0].local.interface = '.'), 'connections[0].local.interface'],
  ['interface ..', (d) => (d.connections[0].local.interface = '..'), 'connections[0].local.interface'],
  [
    'duplicate local interface',
    (d) => (d.connections[1].local.interface = 'veth-a'),
    'connections[1].local.interface',
    "interface 'veth-a' is already used by connections[0]",
  ],
  [
    'local interface is the uplink',
    (d) => (d.connections[1].local.interface = 'eth0'),
    'connections[1].local.interface',
    "'eth0' is the uplink interface",
  ],
  // remotes
  [
    'remote not an address',
    (d) => (d.connections[0].vxlan.remote = 'pod-b.example'),
    'connections[0].vxlan.remote',
    'must be an IPv4 or IPv6 address',
  ],
  [
    'remote with a zone',
    (d) => (d.connections[0].vxlan.remote = 'fe80::1%eth0'),
    'connections[0].vxlan.remote',
    'must be an IPv4 or IPv6 address',
  ],
  [
    'remote a number',
    (d) => (d.connections[0].vxlan.remote = 3323068418),
    'connections[0].vxlan.remote',
    'must be an IPv4 or IPv6 address (got a number)',
  ],
  ['remote missing', (d) => delete d.connections[0].vxlan.remote, 'connections[0].vxlan.remote', 'is required'],
  [
    'remote 0.0.0.0',
    (d) => (d.connections[0].vxlan.remote = '0.0.0.0'),
    'connections[0].vxlan.remote',
    'must not be an unspecified address (0.0.0.0/8)',
  ],
  ['remote ::', (d) => (d.connections[0].vxlan.remote = '::'), 'connections[0].vxlan.remote', 'must not be the unspecified address (::)'],
  [
    'remote 127.0.0.1',
    (d) => (d.connections[0].vxlan.remote = '127.0.0.1'),
    'connections[0].vxlan.remote',
    'must not be a loopback address (127.0.0.0/8)',
  ],
  ['remote ::1', (d) => (d.connections[0].vxlan.remote = '::1'), 'connections[0].vxlan.remote', 'must not be the loopback address (::1)'],
  [
    'remote 239.1.1.1',
    (d) => (d.connections[0].vxlan.remote = '239.1.1.1'),
    'connections[0].vxlan.remote',
    'must not be a multicast address (224.0.0.0/4)',
  ],
  [
    'remote ff02::1',
    (d) => (d.connections[0].vxlan.remote = 'ff02::1'),
    'connections[0].vxlan.remote',
    'must not be a multicast address (ff00::/8)',
  ],
  [
    'remote broadcast',
    (d) => (d.connections[0].vxlan.remote = '255.255.255.255'),
    'connections[0].vxlan.remote',
    'must not be the broadcast address',
  ],
  [
    'remote 169.254.1.1',
    (d) => (d.connections[0].vxlan.remote = '169.254.1.1'),
    'connections[0].vxlan.remote',
    'must not be link-local (169.254.0.0/16): not supported yet',
  ],
  [
    'remote fe80::1',
    (d) => (d.connections[0].vxlan.remote = 'fe80::1'),
    'connections[0].vxlan.remote',
    'must not be link-local (fe80::/10): not supported yet (no scope id)',
  ],
  [
    'remote IPv4-mapped',
    (d) => (d.connections[0].vxlan.remote = '::ffff:198.18.0.2'),
    'connections[0].vxlan.remote',
    'must not be IPv4-mapped (::ffff:0:0/96): write the IPv4 address',
  ],
  // tunnel addresses
  ['tunnelAddress IPv6', (d) => (d.uplink.tunnelAddress = '2001:db8::1'), 'uplink.tunnelAddress', 'must be an IPv4 address'],
  ['tunnelAddress6 IPv4', (d) => (d.uplink.tunnelAddress6 = '198.18.0.1'), 'uplink.tunnelAddress6', 'must be an IPv6 address'],
  [
    'tunnelAddress loopback',
    (d) => (d.uplink.tunnelAddress = '127.0.0.1'),
    'uplink.tunnelAddress',
    'must not be a loopback address (127.0.0.0/8)',
  ],
  [
    'tunnelAddress6 multicast',
    (d) => (d.uplink.tunnelAddress6 = 'ff02::1'),
    'uplink.tunnelAddress6',
    'must not be a multicast address (ff00::/8)',
  ],
  // tunnels that decapsulation could not tell apart
  [
    'duplicate (remote, port, vni)',
    (d) => (d.connections[1].vxlan = { vni: 100, remote: '198.18.0.2', port: 4789 }),
    'connections[1].vxlan',
    'same remote, port and vni as connections[0]: received packets could not be told apart',
  ],
  [
    'duplicate (remote, port, vni) in another spelling',
    (d) => {
      d.connections[0].vxlan = { vni: 5, remote: '2001:db8::2' };
      d.connections[1].vxlan = { vni: 5, remote: '2001:DB8:0::0:2', port: 4789 };
    },
    'connections[1].vxlan',
  ],
];

describe('config: invalid documents (ERR_CONFIG_INVALID, field paths)', () => {
  for (const [what, mutate, field, message] of INVALID) {
    it(what, () => {
      const doc = base();
      mutate(doc);
      const err = fails(() => validateConfig(doc, 'pinhole.yaml'), 'ERR_CONFIG_INVALID');
      assert.equal((err.details as { field: string }).field, field);
      const first = errorsOf(err)[0];
      assert.equal(first.field, field);
      if (message !== undefined) {
        assert.equal(first.message, message);
        assert.equal(err.message, `pinhole.yaml: ${field}: ${message}`);
      } else {
        assert.ok(err.message.startsWith(`pinhole.yaml: ${field}: `), err.message);
      }
    });
  }

  it('reports every problem in details.errors, the first in the message', () => {
    const doc = base();
    doc.uplink.mode = 'x';
    doc.connections[0].vxlan.vni = -1;
    doc.connections[1].vxlan.port = 0;
    doc.connections[1].bar = true;
    const err = fails(() => validateConfig(doc), 'ERR_CONFIG_INVALID');
    assert.equal(err.message, 'config: uplink.mode: must be one of auto, afxdp, afpacket');
    assert.deepEqual(
      errorsOf(err).map((e) => e.field),
      ['uplink.mode', 'connections[0].vxlan.vni', 'connections[1].vxlan.port', 'connections[1].bar'],
    );
  });

  it('reports every collision, in document order', () => {
    const doc = base();
    doc.connections.push({ name: 'pod-a', local: { interface: 'eth0' }, vxlan: { vni: 100, remote: '198.18.0.2' } });
    const err = fails(() => validateConfig(doc), 'ERR_CONFIG_INVALID');
    assert.deepEqual(
      errorsOf(err).map((e) => e.field),
      ['connections[2].name', 'connections[2].local.interface', 'connections[2].vxlan'],
    );
  });

  it('a non-mapping document', () => {
    for (const [text, got] of [
      ['- uplink\n', 'a list'],
      ['just text\n', 'a string'],
      ['42\n', 'a number'],
    ]) {
      const err = fails(() => parseConfig(text, 'pinhole.yaml'), 'ERR_CONFIG_INVALID');
      assert.equal(err.message, `pinhole.yaml: must be a mapping (got ${got})`);
      assert.equal((err.details as { field: string }).field, '');
    }
  });

  for (const [what, text] of [
    ['empty file', ''],
    ['only comments', '# nothing yet\n\n'],
    ['an explicit null document', '~\n'],
  ]) {
    it(what, () => {
      const err = fails(() => parseConfig(text, 'pinhole.yaml'), 'ERR_CONFIG_INVALID');
      assert.equal(err.message, "pinhole.yaml: is empty: expected a mapping with an 'uplink' key");
    });
  }

  it('gives line and column of each problem when parsing text', () => {
    const text = [
      'uplink:',
      '  interface: eth0',
      '  mdoe: auto',
      'connections:',
      '  - name: a',
      '    local: {}',
      '    vxlan: { vni: -1, remote: 198.18.0.2 }',
      '',
    ].join('\n');
    const err = fails(() => parseConfig(text, 'pinhole.yaml'), 'ERR_CONFIG_INVALID');
    assert.deepEqual(errorsOf(err), [
      {
        field: 'uplink.mdoe',
        message: "unknown key 'mdoe' (allowed: interface, mode, tunnelAddress, tunnelAddress6, queues, rings, cpus, spinUs)",
        line: 3,
        column: 3,
      },
      { field: 'connections[0].local.interface', message: 'is required', line: 6, column: 5 },
      { field: 'connections[0].vxlan.vni', message: 'must be an integer 0..16777215', line: 7, column: 14 },
    ]);
  });

  it('reads YAML 1.2: yes is a string, not a boolean', () => {
    const err = fails(() => parseConfig('uplink: { interface: eth0, mode: yes }\n'), 'ERR_CONFIG_INVALID');
    assert.equal(err.message, 'config: uplink.mode: must be one of auto, afxdp, afpacket');
  });
});

describe('config: YAML errors (ERR_CONFIG_YAML)', () => {
  const cases: Array<[string, string, number, number]> = [
    ['unclosed flow sequence', 'uplink: { interface: eth0 }\nconnections: [\n', 3, 1],
    ['bad indentation', 'uplink:\n  interface: eth0\n mode: auto\n', 3, 1],
    ['duplicate key', 'uplink: { interface: eth0 }\nuplink: { interface: eth1 }\n', 2, 1],
    ['tab indentation', 'uplink:\n\tinterface: eth0\n', 2, 1],
    ['two documents', 'uplink: { interface: eth0 }\n---\nuplink: { interface: eth1 }\n', 2, 1],
    ['unknown tag', 'uplink: { interface: !secret eth0 }\n', 1, 22],
    ['a list as a key', 'uplink: { interface: eth0 }\n? [a, b]\n: 1\n', 2, 3],
  ];
  for (const [what, text, line, column] of cases) {
    it(`${what}: line ${line}, column ${column}`, () => {
      const err = fails(() => parseConfig(text, 'pinhole.yaml'), 'ERR_CONFIG_YAML');
      assert.ok(err.message.startsWith(`pinhole.yaml:${line}:${column}: `), err.message);
      assert.equal((err.details as { line: number }).line, line);
      assert.equal((err.details as { column: number }).column, column);
    });
  }

  it('an alias to no anchor', () => {
    const err = fails(() => parseConfig('uplink: *up\n', 'pinhole.yaml'), 'ERR_CONFIG_YAML');
    assert.match(err.message, /^pinhole\.yaml: .*alias/i);
  });

  it('anchors and aliases that resolve are fine', () => {
    const text =
      'uplink: { interface: eth0 }\nconnections:\n  - { name: a, local: { interface: v1 }, vxlan: &t { vni: 1, remote: 198.18.0.2 } }\n  - { name: b, local: { interface: v2 }, vxlan: { vni: 2, remote: 198.18.0.2 } }\n';
    assert.equal(parseConfig(text).connections.length, 2);
  });
});

describe('config: validateConnection', () => {
  it('returns the typed connection with defaults', () => {
    assert.deepEqual(validateConnection({ name: 'pod-a', local: { interface: 'veth-a' }, vxlan: { vni: 1, remote: '2001:db8::0:2' } }), {
      name: 'pod-a',
      local: { interface: 'veth-a' },
      vxlan: { vni: 1, remote: '2001:db8::2', family: 6, port: 4789, ttl: 64 },
    });
  });

  it('prefixes field paths with `field`', () => {
    const c = { name: 'pod-a', local: { interface: 'veth-a' }, vxlan: { vni: 1, remote: '198.18.0.2', port: 0 } };
    let err = fails(() => validateConnection(c), 'ERR_CONFIG_INVALID');
    assert.equal(err.message, 'connection.vxlan.port: must be an integer 1..65535');
    err = fails(() => validateConnection(c, 'body'), 'ERR_CONFIG_INVALID');
    assert.equal((err.details as { field: string }).field, 'body.vxlan.port');
    err = fails(() => validateConnection([], 'body'), 'ERR_CONFIG_INVALID');
    assert.equal(err.message, 'body: must be a mapping (got a list)');
  });
});

describe('config: workerSpinUs', () => {
  const spinOf = (uplink: string, workers = 1): number =>
    workerSpinUs(parseConfig(`uplink: { interface: eth0${uplink} }\n`).uplink, workers);
  it('as configured, 0 included; absent: the pinned default when every worker has a CPU of its own, else 0', () => {
    assert.equal(SPIN_US_PINNED_DEFAULT, 500);
    assert.equal(spinOf(''), 0);
    assert.equal(spinOf(', cpus: [1]'), SPIN_US_PINNED_DEFAULT);
    assert.equal(spinOf(', cpus: [1, 2]', 2), SPIN_US_PINNED_DEFAULT);
    assert.equal(spinOf(', cpus: [1]', 2), 0, 'two workers share a CPU: polling would take it from the other');
    assert.equal(spinOf(', cpus: [1], spinUs: 300', 2), 300, 'unless asked for');
    assert.equal(spinOf(', cpus: [1], spinUs: 0'), 0);
    assert.equal(spinOf(', spinUs: 2000'), 2000);
  });
});

describe('config: tunnelPorts', () => {
  it('no connections, no ports', () => {
    assert.deepEqual(tunnelPorts(parseConfig('uplink: { interface: eth0 }\n')), []);
  });

  it('sorted unique ports with a count of users each', () => {
    const doc = base();
    doc.connections[0].vxlan.port = 8472;
    doc.connections.push(
      { name: 'pod-c', local: { interface: 'veth-c' }, vxlan: { vni: 3, remote: '198.18.0.3', port: 8472 } },
      { name: 'pod-d', local: { interface: 'veth-d' }, vxlan: { vni: 4, remote: '198.18.0.4', port: 4790 } },
      { name: 'pod-e', local: { interface: 'veth-e' }, vxlan: { vni: 5, remote: '198.18.0.5' } },
    );
    assert.deepEqual(tunnelPorts(validateConfig(doc)), [
      { port: 4789, users: 2 },
      { port: 4790, users: 1 },
      { port: 8472, users: 2 },
    ]);
  });

  it('follows connections as they are removed', () => {
    const doc = base();
    assert.deepEqual(tunnelPorts(validateConfig(doc)), [{ port: 4789, users: 2 }]);
    doc.connections.pop();
    assert.deepEqual(tunnelPorts(validateConfig(doc)), [{ port: 4789, users: 1 }]);
    doc.connections.pop();
    assert.deepEqual(tunnelPorts(validateConfig(doc)), []);
  });
});

describe('config: loadConfig', () => {
  it('a missing file gives ERR_CONFIG_READ with ENOENT', async () => {
    const path = join(tmpdir(), `pinhole-no-such-config-${process.pid}.yaml`);
    await assert.rejects(loadConfig(path), (err: unknown) => {
      assert.ok(err instanceof PinholeError);
      assert.equal(err.code, 'ERR_CONFIG_READ');
      assert.equal((err.details as { errno: string }).errno, 'ENOENT');
      assert.ok(err.message.includes(path), err.message);
      return true;
    });
  });

  it('a directory gives ERR_CONFIG_READ with EISDIR', async () => {
    await assert.rejects(loadConfig(FIXTURES), (err: unknown) => {
      assert.ok(err instanceof PinholeError);
      assert.equal(err.code, 'ERR_CONFIG_READ');
      assert.equal((err.details as { errno: string }).errno, 'EISDIR');
      return true;
    });
  });

  it('names the file in validation messages', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pinhole-config-'));
    try {
      const path = join(dir, 'pinhole.yaml');
      await writeFile(path, 'uplink: { interface: eth0, mode: turbo }\n');
      await assert.rejects(loadConfig(path), (err: unknown) => {
        assert.ok(err instanceof PinholeError);
        assert.equal(err.code, 'ERR_CONFIG_INVALID');
        assert.equal(err.message, `${path}: uplink.mode: must be one of auto, afxdp, afpacket`);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
