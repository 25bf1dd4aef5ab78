// Worker-thread entry: registers tsx's loader in this thread, then imports the TypeScript module
// named in workerData.__entry. (Loader hooks from the main thread do not reach workers on Node 20.)
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.__entry);
