/** Which runs count (the server's core was ours and the server was the bottleneck) and the median taken. */
import type { Run } from './settings.ts';

/**
 * Every target here is CPU-bound on the server core: the server (and, for a proxy, the upstream
 * beside it) should keep that core busy. Below this share of it, the server was waiting — for a CPU
 * another process held (contended), or for a load generator that could not keep up.
 */
export const CONTENDED_BELOW_PERCENT = 85;
/** A generator this busy (of its one core) is the bottleneck, not the server. */
export const GENERATOR_BOUND_PERCENT = 90;
/** Runs per target in which its server had its core (see isClean) before the figures are trusted. */
export const MIN_CLEAN_RUNS = 3;

export function isClean(run: Run): boolean {
  return run.state === 'clean';
}

/** The clean runs, or all of them when none was clean (the report says so). */
export function countedRuns(runs: Run[]): Run[] {
  const clean = runs.filter(isClean);
  return clean.length > 0 ? clean : runs;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function medianOf(runs: Run[], pick: (r: Run) => number | null | undefined): number | undefined {
  const values = runs.map(pick).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return values.length > 0 ? median(values) : undefined;
}
