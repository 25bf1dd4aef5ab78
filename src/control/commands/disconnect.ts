/**
 * `pinhole disconnect NAME [--socket PATH]`: removes connection NAME from a running daemon
 * (DELETE /v1/connections/NAME). An unknown name is the daemon's ERR_API_NOT_FOUND (exit 1).
 */
import { parseArgs } from 'node:util';

import { ApiClient, DEFAULT_API_SOCKET } from '../../api/client.ts';
import { PinholeError } from '../../sys/index.ts';
import type { CommandIO } from '../io.ts';

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { socket: { type: 'string', default: DEFAULT_API_SOCKET } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) {
    throw new PinholeError(
      'ERR_CLI_USAGE',
      positionals.length ? `disconnect takes one NAME (got ${positionals.join(' ')})` : 'disconnect needs a NAME',
    );
  }
  if (values.socket === '') throw new PinholeError('ERR_CLI_USAGE', '--socket needs a path');
  await new ApiClient(values.socket).deleteConnection(positionals[0]!);
  io.out(`removed connection ${positionals[0]}`);
  return 0;
}
