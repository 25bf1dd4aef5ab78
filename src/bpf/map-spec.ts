/** A BPF map described as plain data (created by kernel/map.ts `createMap`). */
export type MapType = 'hash' | 'array' | 'percpu_array' | 'xskmap';

export interface MapSpec {
  name: string;
  type: MapType;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
}
