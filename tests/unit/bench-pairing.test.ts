import { describe, expect, it } from 'vitest';
import { pairedRatio, ROUND_BLOCKS, roundOrder } from '../../bench/pairing.ts';
import { ALL_TARGETS, RATIOS, type TargetId } from '../../bench/settings.ts';

const targets = ALL_TARGETS.map((id) => ({ id }));
const goals = RATIOS.filter((r) => r.min !== undefined);

describe('the bench runs each goal’s two sides back to back (bench/pairing.ts)', () => {
  it('places every target in exactly one block', () => {
    expect([...ROUND_BLOCKS.flat()].sort()).toEqual([...ALL_TARGETS].sort());
  });

  it('keeps both sides of every goal next to each other in every round', () => {
    for (let round = 1; round <= 10; round++) {
      const ids = roundOrder(targets, round).map((t) => t.id);
      expect(ids).toHaveLength(ALL_TARGETS.length);
      for (const goal of goals) expect(Math.abs(ids.indexOf(goal.a) - ids.indexOf(goal.b)), `${goal.id} in round ${round}`).toBe(1);
    }
  });

  it('lets each side of a goal run first in every other round', () => {
    for (const goal of goals) {
      const firsts = [1, 2, 3, 4].map((round) => {
        const ids = roundOrder(targets, round).map((t) => t.id);
        return ids.indexOf(goal.a) < ids.indexOf(goal.b);
      });
      expect(firsts, goal.id).toEqual([firsts[0], !firsts[0], firsts[0], !firsts[0]]);
    }
  });

  it('rotates the blocks, so the round does not always start with the same one', () => {
    const blockOf = (id: TargetId | undefined) => ROUND_BLOCKS.findIndex((block) => block.some((b) => b === id));
    const starts = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((round) => blockOf(roundOrder(targets, round)[0]?.id)));
    expect(starts.size).toBe(ROUND_BLOCKS.length);
  });

  it('runs only the targets picked (BENCH_TARGETS), in the same relative order', () => {
    const some: { id: TargetId }[] = [{ id: 'sio' }, { id: 'koa' }, { id: 'portal-sio' }];
    expect(roundOrder(some, 1).map((t) => t.id)).toEqual(['koa', 'sio', 'portal-sio']);
    expect(roundOrder(some, 2).map((t) => t.id)).toEqual(['portal-sio', 'sio', 'koa']);
    expect(roundOrder(some, 3).map((t) => t.id)).toEqual(['sio', 'portal-sio', 'koa']);
  });
});

describe('a paired ratio', () => {
  it('is the median of the per-round ratios once enough rounds are paired', () => {
    expect(pairedRatio([0.8, 1.2, 0.9], 0.5, 3)).toEqual({ value: 0.9, paired: true });
    expect(pairedRatio([0.8, 1.2, 0.9, 1.0], 0.5, 3)).toEqual({ value: 0.95, paired: true });
    expect(pairedRatio([Number.NaN, 0.8, 1.2, 0.9], 0.5, 3), 'a round with no figure is no round').toEqual({ value: 0.9, paired: true });
  });

  it('falls back to the ratio of the medians with fewer pairs, and says so', () => {
    expect(pairedRatio([0.8, 1.2], 0.5, 3)).toEqual({ value: 0.5, paired: false });
    expect(pairedRatio([Number.NaN, 0.8, 1.2], 0.5, 3)).toEqual({ value: 0.5, paired: false });
  });
});
