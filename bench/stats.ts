/** Which runs count (the server had a core to itself) and the median the figures are taken as. */
import type { Run } from './settings.ts';

/** A saturated server below this share of a core is being squeezed by another process. */
export const CONTENDED_BELOW_PERCENT = 85;
/** Runs per target in which its server had a core (see isClean) before the figures are trusted. */
export const MIN_CLEAN_RUNS = 3;

/**
 * A run in which the server had (nearly) a core to itself. Every target here is CPU-bound, so a
 * server below that share was waiting for a CPU another process held: its req/s says more about
 * the machine than about the server.
 */
export function isClean(run: Run): boolean {
  return run.serverCpuPercent === null || run.serverCpuPercent >= CONTENDED_BELOW_PERCENT;
}

/** The clean runs, or all of them when none was clean (the report says so). */
export function cleanRuns(runs: Run[]): Run[] {
  return runs.filter(isClean);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
