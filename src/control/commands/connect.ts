/**
 * `pinhole connect NAME --local IF [--local-mode auto|afpacket|afxdp] --vxlan-vni N --remote ADDR [--port P] [--ttl T] [--replace] [--socket PATH] [--json]`:
 * creates connection NAME on a running daemon (PUT /v1/connections/NAME with `If-None-Match: *`):
 * an existing name is refused (ERR_API_EXISTS, exit 1), so a typo never replaces another pod's
 * connection. `--replace` creates or replaces it (a plain PUT: the daemon says which). Only the shape of the command line is checked here (numbers are numbers);
 * the daemon validates the connection — VNI range, address family, interfaces and tunnels in use
 * — and its refusal is printed with its code (`pinhole: ERR_CONFIG_INVALID: vxlan.vni: ...`, exit 1).
 */
import { parseArgs } from 'node:util';

import { ApiClient, DEFAULT_API_SOCKET } from '../../api/client.ts';
import { PinholeError } from '../../sys/index.ts';
import { toJson, type CommandIO } from '../io.ts';

function integer(option: string, text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new PinholeError('ERR_CLI_USAGE', `${option} ${JSON.stringify(text)}: must be a non-negative integer`);
  }
  return Number(text);
}

export async function run(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      local: { type: 'string' },
      'local-mode': { type: 'string' },
      'vxlan-vni': { type: 'string' },
      remote: { type: 'string' },
      port: { type: 'string' },
      ttl: { type: 'string' },
      replace: { type: 'boolean', default: false },
      socket: { type: 'string', default: DEFAULT_API_SOCKET },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) {
    throw new PinholeError(
      'ERR_CLI_USAGE',
      positionals.length ? `connect takes one NAME (got ${positionals.join(' ')})` : 'connect needs a NAME',
    );
  }
  const missing = (['local', 'vxlan-vni', 'remote'] as const).filter((k) => values[k] === undefined || values[k] === '');
  if (missing.length) throw new PinholeError('ERR_CLI_USAGE', `connect needs ${missing.map((k) => `--${k}`).join(', ')}`);
  if (values.socket === '') throw new PinholeError('ERR_CLI_USAGE', '--socket needs a path');
  const name = positionals[0]!;
  const vxlan: Record<string, unknown> = { vni: integer('--vxlan-vni', values['vxlan-vni']!), remote: values.remote! };
  if (values.port !== undefined) vxlan.port = integer('--port', values.port);
  if (values.ttl !== undefined) vxlan.ttl = integer('--ttl', values.ttl);
  const local: Record<string, unknown> = { interface: values.local! };
  // Checked by the daemon (the config schema), like every other field.
  if (values['local-mode'] !== undefined) local.mode = values['local-mode'];
  const body = { local, vxlan };

  const api = new ApiClient(values.socket);
  let r: Awaited<ReturnType<ApiClient['putConnection']>>;
  try {
    r = await api.putConnection(name, body, { ifAbsent: !values.replace });
  } catch (err) {
    if (err instanceof PinholeError && err.code === 'ERR_API_EXISTS') {
      throw new PinholeError(
        'ERR_API_EXISTS',
        `connection '${name}' exists: nothing changed (--replace to replace it, or \`pinhole disconnect ${name}\` first)`,
        { cause: err, ...(err.details ? { details: err.details } : {}) },
      );
    }
    throw err;
  }
  if (values.json) {
    io.out(toJson({ created: r.created, connection: r.connection }));
    return 0;
  }
  const c = r.connection;
  const v = c.config.vxlan!;
  const hop = c.nextHop.via
    ? `${c.nextHop.via}${c.nextHop.mac ? ` ${c.nextHop.mac}` : ''} (${c.nextHop.neighbourState ?? c.nextHop.state})`
    : c.nextHop.state;
  io.out(
    `${r.created ? 'created' : 'replaced'} connection ${c.name}: vni ${v.vni}, remote ${v.remote} port ${v.port} ttl ${v.ttl}, local ${c.config.local.interface}, driver ${c.driver}, next hop ${hop}`,
  );
  for (const reason of c.reasons) io.out(`  ${reason.code}: ${reason.message}`);
  return 0;
}
