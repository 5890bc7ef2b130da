// Whether planned memory fits where it is to be allocated: checked before allocating, so that a plan too
// large for the machine is an ordinary error saying how much was asked and what to lower, on every backend.
import { freemem } from 'node:os';
import { fail } from '../errors.js';
import type { Backend } from '../ops/backend.js';
import type { MemoryReport } from '../models/model.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** Free device memory, for backends that have device memory (null: the CPU). */
export function freeMemory(backend: Backend): number | null {
  return 'freeMemory' in backend ? (backend as { freeMemory(): number }).freeMemory() : null;
}

/** Bytes the backend can still allocate: free device memory, or the host's available memory (within a cgroup limit). */
export function availableMemory(backend: Backend): number {
  const device = freeMemory(backend);
  if (device !== null) return device;
  // a cgroup limit (containers) is reported as 0, undefined or a huge number when there is none
  const limit = process.constrainedMemory?.() ?? 0;
  const free = freemem();
  return limit > 0 && limit < 2 ** 50 ? Math.min(free, Math.max(0, limit - process.memoryUsage.rss())) : free;
}

export interface Region {
  name: string;
  bytes: number;
}

/**
 * Fails when `regions` need more than `available` bytes; `lower` says what to lower. `atLeast`: the regions
 * are lower bounds, estimated before a plan is built (a plan far beyond memory is not built at all).
 */
export function checkFits(regions: Region[], available: number, device: string, lower: string, atLeast = false): void {
  const total = regions.reduce((a, r) => a + r.bytes, 0);
  if (total <= available) return;
  const parts = regions.filter((r) => r.bytes > 0).sort((a, b) => b.bytes - a.bytes).map((r) => `${r.name} ${formatBytes(r.bytes)}`).join(', ');
  const where = device === 'cpu' ? 'the CPU has' : `the ${device} device has`;
  fail('out-of-memory', `the memory plan needs ${atLeast ? 'at least ' : ''}${formatBytes(total)} (${parts}) but ${where} ${formatBytes(Math.max(0, available))} available; ${lower}`);
}

/** The runtime's regions of a memory report (everything but the weights). */
export function runtimeRegions(report: MemoryReport): Region[] {
  return report.regions.filter((r) => r.name !== 'weights');
}
