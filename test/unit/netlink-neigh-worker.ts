/** Worker for netlink-mirror.test.ts: reads the shared neighbour table while the main thread rewrites it. */
import { parentPort, workerData } from 'node:worker_threads';
import { NEIGH_BUSY, NeighbourTableReader } from '../../src/netlink/neigh-table.ts';

const r = new NeighbourTableReader(workerData.sab as SharedArrayBuffer);
const mac = new Uint8Array(6);
let torn = 0;
let reads = 0;
let busy = 0;
const until = Date.now() + 300;
while (Date.now() < until) {
  const s = r.lookupV4(2, 0xc6120009, mac, 0);
  if (s === NEIGH_BUSY) {
    busy++;
    continue;
  }
  reads++;
  // The writer always sets all six bytes to one value: any mix is a torn read.
  if (mac[0] !== mac[5] || mac[1] !== mac[4] || mac[2] !== mac[3] || mac[0] !== mac[2]) torn++;
}
parentPort!.postMessage({ torn, reads, busy });
