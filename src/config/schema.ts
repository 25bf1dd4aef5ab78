/**
 * The pinhole configuration: its typed shape, the zod schemas that check a parsed document, and
 * the checks that need the whole document (names, interfaces and tunnels that must not collide).
 * Pure: no I/O. load.ts turns text into a document and issues into PinholeErrors.
 *
 *   uplink:                                 # the NIC pinhole shares with the kernel
 *     interface: eth0
 *     mode: auto                            # auto | afxdp | afpacket
 *     tunnelAddress: 198.18.0.1             # optional: only UDP to this address enters the pinhole
 *     tunnelAddress6: 2001:db8::1           # optional, the same for IPv6
 *     queues: 4                             # optional: RX queues to serve (1..64)
 *     rings: { rx: 8192, tx: 2048 }         # optional: AF_XDP ring sizes (powers of two 64..32768)
 *     cpus: [2, 3]                          # optional: CPUs for the dataplane workers (worker i on cpus[i mod n])
 *     spinUs: 500                           # optional: µs a worker keeps polling after its last frame (0..10,000,000;
 *                                           #   absent: 500 when cpus gives each worker its own CPU, else 0)
 *   connections:                            # may be empty or absent
 *     - name: pod-a
 *       local: { interface: veth-a }        # host side of the workload's veth; optional
 *                                           #   mode: auto | afpacket | afxdp (see ConnectionConfig)
 *       vxlan: { vni: 100, remote: 198.18.0.2, port: 4789, ttl: 64 }
 *     - name: pod-w
 *       local: { interface: veth-w }          # L3: pinhole is the pod's gateway (ARP/ND answered)
 *       wireguard:
 *         privateKeyFile: /etc/pinhole/wg.key # root-owned, mode 0600 or stricter (checked at use)
 *         listenPort: 51820                   # default 51820
 *         peer:
 *           publicKey: "base64 (44 characters)"
 *           endpoint: "198.18.0.2:51820"      # optional; "[2001:db8::2]:51820" for IPv6
 *           allowedIPs: [198.19.1.0/24]       # cryptokey routing: where the peer may send from and we send to
 *           persistentKeepalive: 25           # optional, seconds
 *           presharedKeyFile: /etc/pinhole/psk # optional, same rules as privateKeyFile
 *
 * Every mapping is strict: an unknown key is an error, so a typo never silently falls back to a
 * default. Messages are ours (short, naming what is allowed); zod's default English never leaks.
 *
 * Extending:
 *  - a top-level section: add its schema to ROOT_SHAPE and its field to PinholeConfig;
 *  - a tunnel kind: add its schema to TUNNEL_KINDS (a connection has exactly one of those keys),
 *    widen ConnectionConfig, and extend tunnelKey()/CONNECTION_CHECKS where the kind matters.
 */
import * as z from 'zod';

import { formatIPv4, formatIPv6, parseIP, type IPFamily } from '../packet/ip.ts';
import { isRingSize, XSK_RING_MAX, XSK_RING_MIN } from '../uplink/xsk/sizing.ts';

export type UplinkMode = 'auto' | 'afxdp' | 'afpacket';

export interface VxlanSettings {
  vni: number;
  /** Canonical text form (RFC 5952 for IPv6). */
  remote: string;
  family: 4 | 6;
  /** UDP destination port, default 4789 (IANA). */
  port: number;
  /** Outer TTL / hop limit, default 64. */
  ttl: number;
}

export interface WireguardPeerSettings {
  /** Base64, 44 characters (as `wg pubkey` prints it). Public: safe to show. */
  publicKey: string;
  /** Canonical `host:port` (`[v6]:port`); absent: learned from the peer's first authenticated packet. */
  endpoint?: string;
  /** Canonical prefixes (`198.19.1.0/24`, `2001:db8:100::/64`), host bits cleared. */
  allowedIPs: string[];
  /** Seconds; absent or 0: off. */
  persistentKeepalive?: number;
  presharedKeyFile?: string;
}

/**
 * A WireGuard connection. Only key *file names* are configuration: the keys themselves are read
 * when the connection starts (daemon/forwarder.ts) and never enter the config, status or logs.
 */
export interface WireguardSettings {
  privateKeyFile: string;
  listenPort: number;
  peer: WireguardPeerSettings;
}

/** A connection has exactly one tunnel: `vxlan` or `wireguard`. */
export interface ConnectionConfig {
  name: string;
  /**
   * The workload interface, and how it is opened: `auto` or `afpacket` (AF_PACKET with GSO and
   * checksum offload: works whatever the pod's offloads), or `afxdp` (AF_XDP: faster, but needs
   * the uplink on AF_XDP, a queue per worker and the pod's TX checksum offload off). Absent: auto.
   */
  local: { interface: string; mode?: UplinkMode };
  vxlan?: VxlanSettings;
  wireguard?: WireguardSettings;
}

/** The connection's tunnel kind. */
export function tunnelKindOf(c: ConnectionConfig): TunnelKind {
  return c.wireguard ? 'wireguard' : 'vxlan';
}

export interface UplinkConfig {
  interface: string;
  mode: UplinkMode;
  tunnelAddress?: string;
  tunnelAddress6?: string;
  queues?: number;
  /**
   * AF_XDP ring sizes of the uplink: `rx` (and the fill ring), `tx` (and the completion ring).
   * Absent: the measured defaults (uplink/xsk/sizing.ts). AF_PACKET ignores them.
   */
  rings?: { rx?: number; tx?: number };
  /**
   * CPUs the dataplane workers run on, worker i (the uplink's queue i) on `cpus[i mod n]`; only
   * the workers are pinned, the main thread and the runtime's own threads stay where the process
   * may run. Absent: the workers run wherever the process may.
   */
  cpus?: number[];
  /**
   * Microseconds a dataplane worker keeps polling its rings after the last frame it moved before
   * it sleeps in poll(2); a frame arriving meanwhile needs no wake-up (the engine's header in
   * dataplane/engine.ts). 0: it sleeps at once. Absent: SPIN_US_PINNED_DEFAULT when `cpus` gives
   * every worker a CPU of its own, else 0. Costs up to that much CPU per gap in the traffic: with
   * gaps shorter than spinUs the worker's CPU is busy all the time.
   */
  spinUs?: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
export const DEFAULT_API_SOCKET = '/run/pinhole/api.sock';

export interface PinholeConfig {
  uplink: UplinkConfig;
  connections: ConnectionConfig[];
  /** The local API (HTTP over a unix socket). */
  api: { socket: string };
  /** Prometheus metrics; absent: no metrics endpoint. `listen` is host:port (IPv6 in brackets). */
  metrics?: { listen: string };
  log: { level: LogLevel };
}

export const UPLINK_MODES: readonly UplinkMode[] = ['auto', 'afxdp', 'afpacket'];
export const VXLAN_DEFAULT_PORT = 4789;
export const VXLAN_DEFAULT_TTL = 64;
export const WIREGUARD_DEFAULT_PORT = 51820;
/** `wg`'s limit for persistent-keepalive. */
export const WIREGUARD_KEEPALIVE_MAX = 65535;
export const VNI_MAX = 0xffffff;
export const QUEUES_MAX = 64;
/** The highest CPU number `uplink.cpus` takes (glibc's cpu_set_t holds 1024). */
export const CPU_MAX = 1023;
/** The longest `uplink.spinUs`: 10 s (longer is always busy in practice). */
export const SPIN_US_MAX = 10_000_000;
/**
 * `uplink.spinUs` when absent and `uplink.cpus` gives every worker a CPU of its own (otherwise 0:
 * a worker polling on a CPU that another worker or other work needs takes it from them).
 * Measured in the lab (README, _Polling before sleeping_): TCP 8-12% more than sleeping at once,
 * idle round trips up to a third shorter.
 */
export const SPIN_US_PINNED_DEFAULT = 500;

/**
 * The `spinUs` of `workers` workers: as configured, else SPIN_US_PINNED_DEFAULT when `cpus` has a
 * CPU for each of them, else 0.
 */
export function workerSpinUs(uplink: Pick<UplinkConfig, 'cpus' | 'spinUs'>, workers: number): number {
  return uplink.spinUs ?? (uplink.cpus && uplink.cpus.length >= workers ? SPIN_US_PINNED_DEFAULT : 0);
}

/** One problem found in a document; `path` is the zod-style path (keys and list indexes). */
export interface ConfigIssue {
  path: (string | number)[];
  message: string;
}

// ---- messages --------------------------------------------------------------------------------

type RawIssue = { code?: string; input?: unknown; expected?: string };

function kindOf(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'boolean') return 'a boolean';
  return typeof v;
}

/**
 * A zod `error` option that says `text`, or "is required" when the key is missing. A value of
 * the wrong type also says what it got ("must be a list (got a mapping)"); a number that is
 * merely out of range or fractional does not (the text already says the range).
 */
function says(text: string): { error: (iss: RawIssue) => string } {
  return {
    error: (iss) => {
      if (iss.input === undefined) return 'is required';
      if (iss.code === 'invalid_type' && !(iss.expected === 'int' && typeof iss.input === 'number')) {
        return `${text} (got ${kindOf(iss.input)})`;
      }
      return text;
    },
  };
}

function intIn(lo: number, hi: number): z.ZodInt {
  const m = says(`must be an integer ${lo}..${hi}`);
  return z.int(m).min(lo, m).max(hi, m);
}

/**
 * A strict mapping. For unknown keys the message lists the allowed ones; issuesOf() turns the
 * one zod issue per mapping into one issue per unknown key.
 */
function mapping<S extends z.ZodRawShape>(shape: S): z.ZodObject<S, z.core.$strict> {
  const allowed = Object.keys(shape).join(', ');
  const other = says('must be a mapping').error;
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `allowed: ${allowed}` : other(iss)),
  });
}

// ---- names -----------------------------------------------------------------------------------

/** Connection names: DNS-label-like, so they work in API paths, metric labels and file names. */
export const CONNECTION_NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;

/**
 * A Linux interface name the kernel accepts (net/core/dev.c dev_valid_name()): 1..15 bytes
 * (IFNAMSIZ 16 with the NUL), not "." or "..", no '/', ':' or whitespace (any Unicode space, a bit
 * stricter than the kernel's isspace()). NUL is refused too (the kernel would cut the name there).
 */
export function isInterfaceName(name: string): boolean {
  const len = Buffer.byteLength(name, 'utf8');
  if (len < 1 || len > 15 || name === '.' || name === '..') return false;
  return !/[/:\s\0]/.test(name);
}

const interfaceName = z
  .string(says('must be an interface name'))
  .refine(isInterfaceName, { error: "must be a Linux interface name: 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'" });

const connectionName = z.string(says('must be a string')).regex(CONNECTION_NAME, {
  error: "must be 1..63 characters of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit",
});

// ---- addresses -------------------------------------------------------------------------------

/** An address after checking: canonical text and family. */
export interface CheckedAddress {
  text: string;
  family: IPFamily;
}

/**
 * Why `bytes` cannot be a tunnel endpoint, or undefined if it can. Link-local addresses are
 * refused for now: an IPv6 link-local address needs a scope (interface) we do not carry, and
 * IPv4 link-local is refused with it for the same single-link reason.
 */
export function unicastProblem(family: IPFamily, b: Uint8Array): string | undefined {
  if (family === 4) {
    if (b[0] === 0) return 'must not be an unspecified address (0.0.0.0/8)';
    if (b[0] === 127) return 'must not be a loopback address (127.0.0.0/8)';
    if (b[0] === 169 && b[1] === 254) return 'must not be link-local (169.254.0.0/16): not supported yet';
    if (b[0] >= 224 && b[0] <= 239) return 'must not be a multicast address (224.0.0.0/4)';
    if (b[0] === 255 && b[1] === 255 && b[2] === 255 && b[3] === 255) return 'must not be the broadcast address';
    return undefined;
  }
  let zero = true;
  for (let i = 0; i < 15; i++) if (b[i] !== 0) zero = false;
  if (zero && b[15] === 0) return 'must not be the unspecified address (::)';
  if (zero && b[15] === 1) return 'must not be the loopback address (::1)';
  if (b[0] === 0xff) return 'must not be a multicast address (ff00::/8)';
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) {
    return 'must not be link-local (fe80::/10): not supported yet (no scope id)';
  }
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) mapped = false;
  if (mapped) return 'must not be IPv4-mapped (::ffff:0:0/96): write the IPv4 address';
  return undefined;
}

/** A unicast IP address of `family` (or either), canonicalised. */
function unicastAddress(family: IPFamily | undefined) {
  const what = family === 4 ? 'an IPv4 address' : family === 6 ? 'an IPv6 address' : 'an IPv4 or IPv6 address';
  return z.string(says(`must be ${what}`)).transform((text, ctx): CheckedAddress => {
    let parsed: ReturnType<typeof parseIP> | undefined;
    try {
      parsed = parseIP(text);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (family !== undefined && parsed.family !== family)) {
      ctx.issues.push({ code: 'custom', message: `must be ${what}`, input: text });
      return z.NEVER;
    }
    const problem = unicastProblem(parsed.family, parsed.bytes);
    if (problem) {
      ctx.issues.push({ code: 'custom', message: problem, input: text });
      return z.NEVER;
    }
    const canonical = parsed.family === 4 ? formatIPv4(parsed.bytes) : formatIPv6(parsed.bytes); // RFC 5952
    return { text: canonical, family: parsed.family };
  });
}

// ---- sections --------------------------------------------------------------------------------

/** An AF_XDP ring size: a power of two XSK_RING_MIN..XSK_RING_MAX. */
const ringSize = z
  .int(says(`must be a power of two ${XSK_RING_MIN}..${XSK_RING_MAX}`))
  .refine(isRingSize, { error: `must be a power of two ${XSK_RING_MIN}..${XSK_RING_MAX}` });

const uplinkSchema = mapping({
  interface: interfaceName,
  mode: z.enum(UPLINK_MODES as [UplinkMode, ...UplinkMode[]], says(`must be one of ${UPLINK_MODES.join(', ')}`)).default('auto'),
  tunnelAddress: unicastAddress(4).optional(),
  tunnelAddress6: unicastAddress(6).optional(),
  queues: intIn(1, QUEUES_MAX).optional(),
  rings: mapping({ rx: ringSize.optional(), tx: ringSize.optional() }).optional(),
  cpus: z
    .array(intIn(0, CPU_MAX), says('must be a list of CPU numbers'))
    .min(1, 'must name at least one CPU')
    .max(QUEUES_MAX, `at most ${QUEUES_MAX} CPUs`)
    .refine((v) => new Set(v).size === v.length, 'must not name a CPU twice')
    .optional(),
  spinUs: intIn(0, SPIN_US_MAX).optional(),
}).transform((u): UplinkConfig => {
  const out: UplinkConfig = { interface: u.interface, mode: u.mode };
  if (u.tunnelAddress) out.tunnelAddress = u.tunnelAddress.text;
  if (u.tunnelAddress6) out.tunnelAddress6 = u.tunnelAddress6.text;
  if (u.queues !== undefined) out.queues = u.queues;
  if (u.cpus) out.cpus = [...u.cpus];
  if (u.spinUs !== undefined) out.spinUs = u.spinUs;
  if (u.rings) {
    out.rings = {};
    if (u.rings.rx !== undefined) out.rings.rx = u.rings.rx;
    if (u.rings.tx !== undefined) out.rings.tx = u.rings.tx;
  }
  return out;
});

const vxlanSchema = mapping({
  vni: intIn(0, VNI_MAX),
  remote: unicastAddress(undefined),
  port: intIn(1, 65535).default(VXLAN_DEFAULT_PORT),
  ttl: intIn(1, 255).default(VXLAN_DEFAULT_TTL),
}).transform((v): VxlanSettings => ({ vni: v.vni, remote: v.remote.text, family: v.remote.family, port: v.port, ttl: v.ttl }));

/** A WireGuard key as `wg` writes it: base64 of 32 bytes (one '=' of padding). */
export const WIREGUARD_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const keyFile = z
  .string(says('must be an absolute path'))
  .refine((v) => v.startsWith('/') && !v.includes('\0'), 'must be an absolute path (the key file, not the key)');

/** `host:port` or `[v6]:port`, the host a unicast address; canonical text out. */
const endpointSchema = z.string(says('must be host:port')).transform((text, ctx): string => {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : 0;
  let parsed: ReturnType<typeof parseIP> | undefined;
  try {
    parsed = m ? parseIP(m[1]!) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!m || !parsed || port < 1 || port > 65535 || (parsed.family === 6) !== text.startsWith('[')) {
    ctx.issues.push({
      code: 'custom',
      message: 'must be IPv4:port or [IPv6]:port, e.g. 198.18.0.2:51820 or [2001:db8::2]:51820',
      input: text,
    });
    return z.NEVER;
  }
  const problem = unicastProblem(parsed.family, parsed.bytes);
  if (problem) {
    ctx.issues.push({ code: 'custom', message: `address ${problem}`, input: text });
    return z.NEVER;
  }
  return parsed.family === 4 ? `${formatIPv4(parsed.bytes)}:${port}` : `[${formatIPv6(parsed.bytes)}]:${port}`;
});

/** An IP prefix `addr/len` (a bare address is a host prefix); host bits are cleared. */
const prefixSchema = z.string(says('must be an IP prefix')).transform((text, ctx): string => {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  let parsed: ReturnType<typeof parseIP> | undefined;
  try {
    parsed = parseIP(addr);
  } catch {
    parsed = undefined;
  }
  const max = parsed?.family === 6 ? 128 : 32;
  const lenText = slash < 0 ? String(max) : text.slice(slash + 1);
  const len = /^\d{1,3}$/.test(lenText) ? Number(lenText) : -1;
  if (!parsed || len < 0 || len > max) {
    ctx.issues.push({ code: 'custom', message: 'must be an IP prefix, e.g. 198.19.1.0/24 or 2001:db8:100::/64', input: text });
    return z.NEVER;
  }
  const b = parsed.bytes;
  for (let i = 0; i < b.length; i++) {
    const keep = Math.max(0, Math.min(8, len - 8 * i));
    b[i] = b[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return `${parsed.family === 4 ? formatIPv4(b) : formatIPv6(b)}/${len}`;
});

const wireguardSchema = mapping({
  privateKeyFile: keyFile,
  listenPort: intIn(1, 65535).default(WIREGUARD_DEFAULT_PORT),
  peer: mapping({
    publicKey: z.string(says('must be a WireGuard public key')).regex(WIREGUARD_KEY, {
      error: 'must be a WireGuard public key: 44 characters of base64 (as `wg pubkey` or `pinhole wg pubkey` prints it)',
    }),
    endpoint: endpointSchema.optional(),
    allowedIPs: z.array(prefixSchema, says('must be a list of IP prefixes')).min(1, { error: 'must name at least one prefix' }),
    persistentKeepalive: intIn(0, WIREGUARD_KEEPALIVE_MAX).optional(),
    presharedKeyFile: keyFile.optional(),
  }),
}).transform((w): WireguardSettings => {
  const peer: WireguardPeerSettings = { publicKey: w.peer.publicKey, allowedIPs: [...new Set(w.peer.allowedIPs)] };
  if (w.peer.endpoint !== undefined) peer.endpoint = w.peer.endpoint;
  if (w.peer.persistentKeepalive) peer.persistentKeepalive = w.peer.persistentKeepalive;
  if (w.peer.presharedKeyFile !== undefined) peer.presharedKeyFile = w.peer.presharedKeyFile;
  return { privateKeyFile: w.privateKeyFile, listenPort: w.listenPort, peer };
});

/** The tunnel kinds a connection may use; a connection names exactly one of these keys. */
const TUNNEL_KINDS = {
  vxlan: vxlanSchema.optional(),
  wireguard: wireguardSchema.optional(),
} as const;
export type TunnelKind = keyof typeof TUNNEL_KINDS;
export const TUNNEL_KIND_NAMES = Object.keys(TUNNEL_KINDS) as TunnelKind[];

const connectionSchema = mapping({
  name: connectionName,
  local: mapping({
    interface: interfaceName,
    mode: z.enum(UPLINK_MODES as [UplinkMode, ...UplinkMode[]], says(`must be one of ${UPLINK_MODES.join(', ')}`)).optional(),
  }),
  ...TUNNEL_KINDS,
})
  .superRefine((c, ctx) => {
    const kinds = TUNNEL_KIND_NAMES.filter((k) => c[k] !== undefined);
    if (kinds.length === 0) {
      ctx.addIssue({ code: 'custom', message: `needs a tunnel: one of ${TUNNEL_KIND_NAMES.join(', ')}`, input: c });
    } else if (kinds.length > 1) {
      ctx.addIssue({ code: 'custom', message: `has more than one tunnel (${kinds.join(', ')}): use one`, input: c });
    }
    if (c.wireguard !== undefined && c.local.mode === 'afxdp') {
      ctx.addIssue({
        code: 'custom',
        path: ['local', 'mode'],
        message: 'WireGuard workload interfaces are AF_PACKET only (worker 0 serves them)',
        input: c,
      });
    }
  })
  .transform((c): ConnectionConfig => {
    const local =
      c.local.mode !== undefined && c.local.mode !== 'auto'
        ? { interface: c.local.interface, mode: c.local.mode }
        : { interface: c.local.interface };
    return c.wireguard ? { name: c.name, local, wireguard: c.wireguard } : { name: c.name, local, vxlan: c.vxlan! };
  });

/** Top-level sections. `connections` may be absent or empty (`connections:` alone reads as null). */
const apiSchema = mapping({
  socket: z
    .string(says('must be an absolute path'))
    .refine((v) => v.startsWith('/') && v.length < 108 && !v.includes('\0'), 'must be an absolute path shorter than 108 bytes')
    .default(DEFAULT_API_SOCKET),
});

const listenSchema = z
  .string(says('must be host:port'))
  .refine(
    (v) => /^(\[[0-9a-fA-F:.]+\]|[0-9.]+|localhost):(\d{1,5})$/.test(v) && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535,
    'must be host:port, e.g. 127.0.0.1:9464 or [::1]:9464',
  );

const ROOT_SHAPE = {
  uplink: uplinkSchema,
  api: apiSchema.nullish().transform((v) => v ?? { socket: DEFAULT_API_SOCKET }),
  metrics: mapping({ listen: listenSchema }).optional(),
  log: mapping({
    level: z.enum(LOG_LEVELS as [LogLevel, ...LogLevel[]], says(`must be one of ${LOG_LEVELS.join(', ')}`)).default('info'),
  })
    .nullish()
    .transform((v) => v ?? { level: 'info' as LogLevel }),
  connections: z
    .array(connectionSchema, says('must be a list'))
    .nullish()
    .transform((v): ConnectionConfig[] => v ?? []),
};

const configSchema = mapping(ROOT_SHAPE).transform((c): PinholeConfig => ({
  uplink: c.uplink,
  connections: c.connections,
  api: c.api,
  ...(c.metrics ? { metrics: c.metrics } : {}),
  log: c.log,
}));

/** Zod's issues as ours: one per unknown key, first occurrence of each (path, message) only. */
function issuesOf(error: z.ZodError): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const seen = new Set<string>();
  const add = (path: (string | number)[], message: string): void => {
    const key = JSON.stringify([path, message]);
    if (seen.has(key)) return; // e.g. 1e300 breaks both the safe-integer and the range check
    seen.add(key);
    out.push({ path, message });
  };
  for (const iss of error.issues) {
    const path = iss.path.map((p) => (typeof p === 'number' ? p : String(p)));
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) add([...path, key], `unknown key '${key}' (${iss.message})`);
    } else {
      add(path, iss.message);
    }
  }
  return out;
}

export type CheckResult<T> = { ok: true; value: T } | { ok: false; issues: ConfigIssue[] };

/**
 * Checks a parsed document: the schema first, then (if that passed) the checks across
 * connections. Every problem found is returned, in document order within each stage.
 */
export function checkConfig(value: unknown): CheckResult<PinholeConfig> {
  if (value === undefined || value === null) {
    return { ok: false, issues: [{ path: [], message: "is empty: expected a mapping with an 'uplink' key" }] };
  }
  const r = configSchema.safeParse(value);
  if (!r.success) return { ok: false, issues: issuesOf(r.error) };
  const issues = crossCheck(r.data);
  return issues.length ? { ok: false, issues } : { ok: true, value: r.data };
}

/** Checks one connection on its own (no checks against other connections or the uplink). */
export function checkConnection(value: unknown): CheckResult<ConnectionConfig> {
  const r = connectionSchema.safeParse(value);
  return r.success ? { ok: true, value: r.data } : { ok: false, issues: issuesOf(r.error) };
}

// ---- checks across the document ----------------------------------------------------------------

/** What identifies a tunnel on receive: decapsulation must map it to exactly one connection. */
function tunnelKey(c: ConnectionConfig): string {
  // A WireGuard connection has a Device of its own: its listen port identifies it.
  if (c.wireguard) return `wireguard port ${c.wireguard.listenPort}`;
  return `vxlan ${c.vxlan!.remote} port ${c.vxlan!.port} vni ${c.vxlan!.vni}`;
}

/** The UDP port a connection receives on. */
export function tunnelPortOf(c: ConnectionConfig): number {
  return c.wireguard ? c.wireguard.listenPort : c.vxlan!.port;
}

type Check = (cfg: PinholeConfig, report: (issue: ConfigIssue) => void) => void;

const CONNECTION_CHECKS: Check[] = [
  function uniqueNames(cfg, report) {
    const seen = new Map<string, number>();
    cfg.connections.forEach((c, i) => {
      const first = seen.get(c.name);
      if (first === undefined) seen.set(c.name, i);
      else report({ path: ['connections', i, 'name'], message: `duplicate name '${c.name}' (also connections[${first}])` });
    });
  },
  function localInterfaces(cfg, report) {
    const seen = new Map<string, number>();
    cfg.connections.forEach((c, i) => {
      const ifname = c.local.interface;
      const path = ['connections', i, 'local', 'interface'];
      if (ifname === cfg.uplink.interface) {
        report({ path, message: `'${ifname}' is the uplink interface` });
        return;
      }
      const first = seen.get(ifname);
      if (first === undefined) seen.set(ifname, i);
      else report({ path, message: `interface '${ifname}' is already used by connections[${first}]` });
    });
  },
  function distinctTunnels(cfg, report) {
    const seen = new Map<string, number>();
    cfg.connections.forEach((c, i) => {
      const key = tunnelKey(c);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else if (c.wireguard) {
        report({
          path: ['connections', i, 'wireguard', 'listenPort'],
          message: `port ${c.wireguard.listenPort} is already the listen port of connections[${first}]: each WireGuard connection needs its own`,
        });
      } else {
        report({
          path: ['connections', i, 'vxlan'],
          message: `same remote, port and vni as connections[${first}]: received packets could not be told apart`,
        });
      }
    });
  },
  function portsOfOneKind(cfg, report) {
    // Received datagrams are told apart by UDP destination port first: one port, one tunnel kind.
    const vxlanPorts = new Set(cfg.connections.filter((c) => c.vxlan).map((c) => c.vxlan!.port));
    cfg.connections.forEach((c, i) => {
      if (c.wireguard && vxlanPorts.has(c.wireguard.listenPort)) {
        report({
          path: ['connections', i, 'wireguard', 'listenPort'],
          message: `port ${c.wireguard.listenPort} is a VXLAN port of another connection: use another port`,
        });
      }
    });
  },
];

/** Checks that need the whole document; runs after the schema accepted it. */
function crossCheck(cfg: PinholeConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const check of CONNECTION_CHECKS) check(cfg, (issue) => issues.push(issue));
  // Document order (by connection; sort is stable), so the first message is the first problem.
  const index = (i: ConfigIssue): number => (typeof i.path[1] === 'number' ? i.path[1] : -1);
  return issues.sort((a, b) => index(a) - index(b));
}

/** The UDP ports the pinhole must open: sorted unique ports, each with how many connections use it. */
export function tunnelPorts(cfg: PinholeConfig): { port: number; users: number }[] {
  const users = new Map<number, number>();
  for (const c of cfg.connections) users.set(tunnelPortOf(c), (users.get(tunnelPortOf(c)) ?? 0) + 1);
  return [...users].sort((a, b) => a[0] - b[0]).map(([port, n]) => ({ port, users: n }));
}
