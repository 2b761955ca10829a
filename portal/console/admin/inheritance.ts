import type { NestingEdge } from '../../../lib/directory/groups.ts';

/** How a user comes to be in one group: directly, or through the group one step below it. */
export interface Inherited {
  group: string;
  /** The group it is inherited through (the previous step of a shortest path); null when direct. */
  through: string | null;
  /** Steps from a direct membership: 0 for a direct one. */
  depth: number;
}

/**
 * Every group a user is in, each with one shortest way there, as a tree of back-links rather than
 * whole paths: a user at the bottom of a 1,000-deep nesting has 1,000 groups, and writing each full
 * path would be half a million names. Breadth-first from the direct memberships, so the first way
 * found to a group is a shortest one; linear in groups and nesting edges.
 */
export function inheritanceOf(direct: string[], edges: NestingEdge[]): Map<string, Inherited> {
  const parents = new Map<string, string[]>();
  for (const e of edges) {
    const list = parents.get(e.child);
    if (list) list.push(e.parent);
    else parents.set(e.child, [e.parent]);
  }
  const found = new Map<string, Inherited>();
  const queue: string[] = [];
  for (const group of direct) {
    if (found.has(group)) continue;
    found.set(group, { group, through: null, depth: 0 });
    queue.push(group);
  }
  for (let head = 0; head < queue.length; head++) {
    const current = found.get(queue[head] as string) as Inherited;
    for (const parent of parents.get(current.group) ?? []) {
      if (found.has(parent)) continue;
      found.set(parent, { group: parent, through: current.group, depth: current.depth + 1 });
      queue.push(parent);
    }
  }
  return found;
}

/** The whole shortest path to one group, direct membership first, e.g. `["contractors", "ea"]`. */
export function pathTo(tree: Map<string, Inherited>, group: string): string[] {
  const path: string[] = [];
  for (let step = tree.get(group); step; step = step.through === null ? undefined : tree.get(step.through)) path.push(step.group);
  return path.reverse();
}

/**
 * A path short enough to read in a table cell: up to five groups in full, a longer one as its two
 * ends with the count of the groups between them (the full path is one link away).
 */
export function shortPath(tree: Map<string, Inherited>, group: string): { text: string; elided: boolean } {
  const path = pathTo(tree, group);
  if (path.length <= 5) return { text: path.join(' ⊂ '), elided: false };
  return { text: `${path.slice(0, 2).join(' ⊂ ')} ⊂ … ${path.length - 4} more … ⊂ ${path.slice(-2).join(' ⊂ ')}`, elided: true };
}
