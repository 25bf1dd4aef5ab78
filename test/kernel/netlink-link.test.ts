/** getLink/listLinks and netlink XDP attach, against the real kernel in a fresh namespace. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../helpers/require.ts';
import { addVeth, withNetns } from '../helpers/netns.ts';

const CHILD = fileURLToPath(new URL('./netlink-child.ts', import.meta.url));

test('getLink describes a veth (kind, peer, queues, MTU limits) and XDP attach/replace/detach works over netlink', async () => {
  requireRoot();
  await withNetns(['nl-link-a', 'nl-link-b'], (a, b) => {
    addVeth(a, 'ph0', b, 'ph1', { queues: 2 });
    a.ip('link', 'set', 'ph0', 'mtu', '1400', 'address', '02:00:00:00:aa:01');
    const peerIndex = Number(/^(\d+):/.exec(b.ip('-o', 'link', 'show', 'ph1'))![1]);
    const r = JSON.parse(a.exec('node', ['--import', 'tsx', CHILD, 'link', 'ph0']));

    const l = r.byName;
    assert.equal(l.name, 'ph0');
    assert.equal(l.kind, 'veth');
    assert.equal(l.mtu, 1400);
    assert.equal(l.mac, '02:00:00:00:aa:01');
    assert.equal(l.numRxQueues, 2);
    assert.equal(l.numTxQueues, 2);
    assert.equal(typeof l.maxMtu, 'number');
    assert.equal(l.link, peerIndex, 'IFLA_LINK is the peer ifindex');
    assert.equal(typeof l.linkNetnsid, 'number', 'peer lives in another namespace');
    assert.equal(l.operUp, true);
    assert.deepEqual(l.xdp, { attached: 'none' });
    assert.deepEqual(r.byIndex, l);
    assert.deepEqual(r.sync, l);
    assert.deepEqual(r.list, ['lo', 'ph0']);
    assert.deepEqual(r.listSync, ['lo', 'ph0']);

    assert.equal(r['missing:nope0'].code, 'ERR_IFACE_NOT_FOUND');
    assert.equal(r[`missing:${'x'.repeat(20)}`].code, 'ERR_IFACE_NOT_FOUND');
    assert.equal(r.missingIndex.code, 'ERR_IFACE_NOT_FOUND');

    assert.equal(r.attached.attached, 'generic');
    assert.ok(r.attached.progId > 0);
    assert.equal(r.attached.skbProgId, r.attached.progId);
    assert.equal(r.second.code, 'ERR_NETLINK_REQUEST', 'never replaces an attached program without replace');
    assert.equal(r.second.errnoCode, 'EBUSY');
    assert.equal(r.replaced.attached, 'generic');
    assert.notEqual(r.replaced.progId, r.attached.progId);
    assert.equal(r.wrongExpected.code, 'ERR_NETLINK_REQUEST');
    assert.equal(r.wrongExpected.errnoCode, 'EEXIST');
    assert.deepEqual(r.cleared, { attached: 'none' });
  });
});
