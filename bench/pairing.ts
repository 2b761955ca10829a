/**
 * Paired measurement. The host under these VMs changes speed from minute to minute (bare node has
 * run at 15k and at 44k req/s on the same day), so two targets measured a minute apart are not
 * compared on the same machine. Each goal's two targets therefore run back to back in every round,
 * in alternating order, and a ratio is the median of its per-round ratios: each of those compares
 * two runs made seconds apart, and the drift between rounds cancels out of it.
 */
import type { TargetId } from './settings.ts';
import { median } from './stats.ts';

/**
 * The targets in blocks whose neighbours are each goal's two sides (see RATIOS in settings.ts):
 * koa–inproc, inproc–bearer, sio–portal-sio, chp–proxied, proxied–nginx, nginx-ws–portal-ws. The
 * context ratios' sides are at most one apart.
 */
export const ROUND_BLOCKS: readonly (readonly TargetId[])[] = [
  ['koa', 'inproc', 'bearer'],
  ['sio', 'portal-sio'],
  ['chp', 'proxied', 'nginx', 'undici', 'node'],
  ['ws', 'nginx-ws', 'portal-ws', 'tunnel-ws'],
];

/**
 * The order of a round (1-based): the blocks rotate, so no block always runs first, and every
 * other round runs backwards, so within a pair each side runs first in every other round — a side
 * that gains from running first (or second) gains equally on both. Blocks are never split.
 */
export function roundOrder<T extends { id: TargetId }>(targets: readonly T[], round: number): T[] {
  // Two rounds (forwards, backwards) per shift: shifting every round would, with an even number
  // of blocks, start the forward rounds with every other block only.
  const shift = Math.floor((round - 1) / 2) % ROUND_BLOCKS.length;
  const blocks = [...ROUND_BLOCKS.slice(shift), ...ROUND_BLOCKS.slice(0, shift)];
  const ids = blocks.flat();
  if (round % 2 === 0) ids.reverse();
  const byId = new Map(targets.map((t) => [t.id, t]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

/**
 * A ratio from paired rounds: the median of the per-round ratios once at least `minPairs` rounds
 * have both sides' runs counted; before that, the ratio of the two sides' medians (what the bench
 * reported before rounds were paired), so a target squeezed out of its pairs still gets a figure.
 */
export function pairedRatio(perRound: readonly number[], ofMedians: number | undefined, minPairs: number): { value: number | undefined; paired: boolean } {
  const usable = perRound.filter((r) => Number.isFinite(r));
  if (usable.length < minPairs) return { value: ofMedians, paired: false };
  return { value: median(usable), paired: true };
}
