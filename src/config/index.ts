/** config: the pinhole configuration file — types, validation, loading. See schema.ts for the format. */
export type { ConnectionConfig, PinholeConfig, UplinkConfig, UplinkMode, VxlanSettings, TunnelKind } from './schema.ts';
export { CONNECTION_NAME, UPLINK_MODES, VNI_MAX, VXLAN_DEFAULT_PORT, VXLAN_DEFAULT_TTL, isInterfaceName, tunnelPorts } from './schema.ts';
export type { ConfigErrorEntry } from './load.ts';
export { loadConfig, parseConfig, validateConfig, validateConnection } from './load.ts';
