/** Where beacons go: the rule of SPEC.md section 1, as a pure function of the interfaces. */

import type { NetworkInterfaceInfo } from 'node:os';

export const MULTICAST_GROUP = '239.255.74.20';
export const LOOPBACK_BROADCAST = '127.255.255.255';

export interface TargetOptions {
  /** The peer's bind host. */
  host: string;
  /** Explicit targets; when non-empty they replace the defaults. */
  beaconTargets: string[];
  multicast: boolean;
}

export function isLoopback(address: string): boolean {
  return (
    address === '::1' || address === 'localhost' || /^127\./.test(address) || /^::ffff:127\./.test(address)
  );
}

/**
 * Explicit targets win. Otherwise: the subnet broadcast address of every up, non-loopback IPv4
 * interface (only the one holding `host` when it is a specific address) and the multicast group;
 * only the loopback broadcast when `host` is a loopback address or no such interface is up.
 */
export function beaconTargets(
  options: TargetOptions,
  interfaces: Record<string, NetworkInterfaceInfo[] | undefined>,
): string[] {
  if (options.beaconTargets.length > 0) return [...options.beaconTargets];
  if (isLoopback(options.host)) return [LOOPBACK_BROADCAST];
  const wildcard = options.host === '0.0.0.0' || options.host === '::';
  const broadcasts = new Set<string>();
  for (const info of Object.values(interfaces).flat()) {
    if (info?.family !== 'IPv4' || info.internal) continue;
    if (!wildcard && info.address !== options.host) continue;
    broadcasts.add(broadcastAddress(info.address, info.netmask));
  }
  if (broadcasts.size === 0) return [LOOPBACK_BROADCAST];
  return [...broadcasts, ...(options.multicast ? [MULTICAST_GROUP] : [])];
}

export function broadcastAddress(address: string, netmask: string): string {
  const a = toInt(address);
  const m = toInt(netmask);
  return fromInt((a | ~m) >>> 0);
}

function toInt(dotted: string): number {
  return dotted.split('.').reduce((acc, part) => ((acc << 8) | Number(part)) >>> 0, 0);
}

function fromInt(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
}
