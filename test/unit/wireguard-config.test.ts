// Unit tests for WireGuard connections in the config file (src/config): the `wireguard` tunnel
// kind, its field errors, canonical forms, the port set, and key files (owner and mode rules).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, readKeyFile, tunnelPorts, validateConnection } from '../../src/config/index.ts';
import { PinholeError } from '../../src/sys/index.ts';
import { encodeKey, generatePrivateKey, publicKeyOf } from '../../src/tunnel/wireguard/keys.ts';

const PUB = encodeKey(publicKeyOf(generatePrivateKey()));

function doc(wg: string, extra = ''): string {
  return `uplink: { interface: eth0 }
connections:
  - { name: pod-a, local: { interface: veth-a }, vxlan: { vni: 100, remote: 198.18.0.2 } }
  - name: pod-w
    local: { interface: veth-w }
    wireguard: ${wg}
${extra}`;
}

function invalid(text: string): { field: string; message: string } {
  try {
    parseConfig(text);
  } catch (err) {
    assert.ok(err instanceof PinholeError);
    assert.equal(err.code, 'ERR_CONFIG_INVALID', err.message);
    const first = (err.details as { errors: { field: string; message: string }[] }).errors[0]!;
    return first;
  }
  assert.fail('expected ERR_CONFIG_INVALID');
}

describe('config: wireguard connections', () => {
  it('local.mode: afpacket and auto are taken (auto is left out), afxdp is refused at the field', () => {
    const wg = `{ privateKeyFile: /etc/pinhole/wg.key, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }`;
    const ok = parseConfig(doc(wg).replace('local: { interface: veth-w }', 'local: { interface: veth-w, mode: afpacket }'));
    assert.deepEqual(ok.connections[1]!.local, { interface: 'veth-w', mode: 'afpacket' });
    const auto = parseConfig(doc(wg).replace('local: { interface: veth-w }', 'local: { interface: veth-w, mode: auto }'));
    assert.deepEqual(auto.connections[1]!.local, { interface: 'veth-w' });
    const e = invalid(doc(wg).replace('local: { interface: veth-w }', 'local: { interface: veth-w, mode: afxdp }'));
    assert.equal(e.field, 'connections[1].local.mode');
    assert.match(e.message, /AF_PACKET only/);
  });

  it('parses, fills defaults, canonicalises endpoint and allowed IPs', () => {
    const c = parseConfig(
      doc(
        `{ privateKeyFile: /etc/pinhole/wg.key, peer: { publicKey: "${PUB}", endpoint: "[2001:DB8::0002]:51821", allowedIPs: [198.19.1.7/24, "2001:db8:100::1/64", 198.19.9.9], persistentKeepalive: 25 } }`,
      ),
    );
    const k = c.connections[1]!;
    assert.equal(k.vxlan, undefined);
    assert.deepEqual(k.wireguard, {
      privateKeyFile: '/etc/pinhole/wg.key',
      listenPort: 51820,
      peer: {
        publicKey: PUB,
        endpoint: '[2001:db8::2]:51821',
        allowedIPs: ['198.19.1.0/24', '2001:db8:100::/64', '198.19.9.9/32'],
        persistentKeepalive: 25,
      },
    });
    assert.deepEqual(tunnelPorts(c), [
      { port: 4789, users: 1 },
      { port: 51820, users: 1 },
    ]);
    assert.equal(Object.hasOwn(c.connections[0]!, 'wireguard'), false);
  });

  const CASES: [string, string, string, string][] = [
    [
      'relative key file',
      `{ privateKeyFile: wg.key, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.privateKeyFile',
      'must be an absolute path',
    ],
    [
      'bad public key',
      `{ privateKeyFile: /k, peer: { publicKey: "abc", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.peer.publicKey',
      'must be a WireGuard public key',
    ],
    [
      'bad endpoint',
      `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", endpoint: "2001:db8::2:51820", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.peer.endpoint',
      'must be IPv4:port or [IPv6]:port',
    ],
    [
      'endpoint port 0',
      `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", endpoint: "198.18.0.2:0", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.peer.endpoint',
      'must be IPv4:port or [IPv6]:port',
    ],
    [
      'multicast endpoint',
      `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", endpoint: "224.0.0.1:51820", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.peer.endpoint',
      'address must not be a multicast',
    ],
    [
      'no allowed IPs',
      `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", allowedIPs: [] } }`,
      'connections[1].wireguard.peer.allowedIPs',
      'must name at least one prefix',
    ],
    [
      'bad prefix',
      `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/33] } }`,
      'connections[1].wireguard.peer.allowedIPs[0]',
      'must be an IP prefix',
    ],
    [
      'listen port range',
      `{ privateKeyFile: /k, listenPort: 70000, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.listenPort',
      'must be an integer 1..65535',
    ],
    [
      'unknown key',
      `{ privateKeyFile: /k, privateKey: x, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.privateKey',
      "unknown key 'privateKey'",
    ],
    [
      'keepalive range',
      `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24], persistentKeepalive: -1 } }`,
      'connections[1].wireguard.peer.persistentKeepalive',
      'must be an integer 0..65535',
    ],
    [
      'listen port is a VXLAN port',
      `{ privateKeyFile: /k, listenPort: 4789, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }`,
      'connections[1].wireguard.listenPort',
      'is a VXLAN port',
    ],
  ];
  for (const [name, wg, field, message] of CASES) {
    it(`refuses: ${name}`, () => {
      const e = invalid(doc(wg));
      assert.equal(e.field, field);
      assert.ok(e.message.includes(message), e.message);
    });
  }

  it('refuses two tunnels in one connection, and two WireGuard connections on one port', () => {
    const both = invalid(`uplink: { interface: eth0 }
connections:
  - name: x
    local: { interface: veth-x }
    vxlan: { vni: 1, remote: 198.18.0.2 }
    wireguard: { privateKeyFile: /k, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }
`);
    assert.equal(both.field, 'connections[0]');
    assert.match(both.message, /more than one tunnel \(vxlan, wireguard\)/);
    const dup = invalid(
      doc(
        `{ privateKeyFile: /k, peer: { publicKey: "${PUB}", allowedIPs: [198.19.1.0/24] } }`,
        `  - { name: pod-v, local: { interface: veth-v }, wireguard: { privateKeyFile: /k, peer: { publicKey: "${PUB}", allowedIPs: [198.19.2.0/24] } } }\n`,
      ),
    );
    assert.equal(dup.field, 'connections[2].wireguard.listenPort');
    assert.match(dup.message, /already the listen port of connections\[1\]/);
  });

  it('validates one connection from the API', () => {
    const k = validateConnection({
      name: 'w',
      local: { interface: 'veth-w' },
      wireguard: { privateKeyFile: '/k', peer: { publicKey: PUB, allowedIPs: ['198.19.1.1'] } },
    });
    assert.deepEqual(k.wireguard!.peer.allowedIPs, ['198.19.1.1/32']);
  });
});

describe('config: WireGuard key files', () => {
  const uid = process.getuid!();
  it('reads a 0600 key file owned by the expected user; refuses group/other access with ERR_WG_KEY_FILE_MODE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ph-wgkey-'));
    try {
      const key = generatePrivateKey();
      const path = join(dir, 'wg.key');
      writeFileSync(path, `${encodeKey(key)}\n`, { mode: 0o600 });
      assert.deepEqual(readKeyFile(path, 'private key', { owner: uid }), key);
      chmodSync(path, 0o644);
      assert.throws(
        () => readKeyFile(path, 'private key', { owner: uid }),
        (err: unknown) => {
          assert.ok(err instanceof PinholeError);
          assert.equal(err.code, 'ERR_WG_KEY_FILE_MODE');
          assert.match(err.message, /mode 0644/);
          assert.ok(!err.message.includes(encodeKey(key)), 'the key never appears in a message');
          return true;
        },
      );
      chmodSync(path, 0o600);
      assert.throws(
        () => readKeyFile(path, 'private key', { owner: uid + 1 }),
        (err: unknown) => err instanceof PinholeError && err.code === 'ERR_WG_KEY_FILE_MODE' && /owned by uid/.test(err.message),
      );
      writeFileSync(join(dir, 'bad.key'), 'not a key\n', { mode: 0o600 });
      assert.throws(
        () => readKeyFile(join(dir, 'bad.key'), 'private key', { owner: uid }),
        (err: unknown) => err instanceof PinholeError && err.code === 'ERR_WG_KEY',
      );
      assert.throws(
        () => readKeyFile(join(dir, 'missing.key'), 'private key', { owner: uid }),
        (err: unknown) => err instanceof PinholeError && err.code === 'ERR_WG_KEY_FILE' && /ENOENT/.test(err.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
