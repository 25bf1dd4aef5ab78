/** config: the pinhole configuration file — types, validation, loading. See schema.ts for the format. */
export type {
  ConnectionConfig,
  PinholeConfig,
  UplinkConfig,
  UplinkMode,
  VxlanSettings,
  WireguardSettings,
  WireguardPeerSettings,
  TunnelKind,
} from './schema.ts';
export {
  CONNECTION_NAME,
  UPLINK_MODES,
  SPIN_US_PINNED_DEFAULT,
  VNI_MAX,
  VXLAN_DEFAULT_PORT,
  VXLAN_DEFAULT_TTL,
  WIREGUARD_DEFAULT_PORT,
  isInterfaceName,
  tunnelKindOf,
  tunnelPortOf,
  tunnelPorts,
  workerSpinUs,
} from './schema.ts';
export type { ConfigErrorEntry } from './load.ts';
export { loadConfig, parseConfig, validateConfig, validateConnection } from './load.ts';
export { readKeyFile } from './keyfile.ts';
