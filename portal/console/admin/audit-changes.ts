/** One line of an audit entry's change, as the log page shows it. */
export interface ChangeLine {
  field: string;
  kind: 'set' | 'was' | 'changed';
  before?: string;
  after?: string;
}

/** A value longer than this is cut on the page; the export keeps it whole. */
const VALUE_MAX = 160;
/** Lines shown per entry; a group deleted with many fields still takes a few lines. */
const LINES_MAX = 12;

/**
 * An entry's before and after as lines a person reads, instead of raw JSON: for an update only
 * what changed (`level: ea → devel`), for a creation what was set, for a removal what there was.
 */
export function describeChange(before: unknown, after: unknown): { lines: ChangeLine[]; more: number } {
  const b = asRecord(before);
  const a = asRecord(after);
  const lines: ChangeLine[] = [];
  if (b && a) {
    for (const key of unionOfKeys(b, a)) {
      if (sameValue(b[key], a[key])) continue;
      if (!(key in b)) lines.push({ field: key, kind: 'set', after: show(a[key]) });
      else if (!(key in a)) lines.push({ field: key, kind: 'was', before: show(b[key]) });
      else lines.push({ field: key, kind: 'changed', before: show(b[key]), after: show(a[key]) });
    }
  } else {
    if (b) for (const [key, value] of Object.entries(b)) lines.push({ field: key, kind: 'was', before: show(value) });
    else if (before !== undefined) lines.push({ field: 'before', kind: 'was', before: show(before) });
    if (a) for (const [key, value] of Object.entries(a)) lines.push({ field: key, kind: 'set', after: show(value) });
    else if (after !== undefined) lines.push({ field: 'after', kind: 'set', after: show(after) });
  }
  return { lines: lines.slice(0, LINES_MAX), more: Math.max(0, lines.length - LINES_MAX) };
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function unionOfKeys(b: Record<string, unknown>, a: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(b), ...Object.keys(a)])];
}

function sameValue(x: unknown, y: unknown): boolean {
  return JSON.stringify(x) === JSON.stringify(y);
}

/** A value as words: lists joined by commas, nothing as "none", the rest as compact JSON. */
function show(value: unknown): string {
  let text: string;
  if (value === null || value === undefined || value === '') text = 'none';
  else if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else if (Array.isArray(value) && value.every((v) => typeof v !== 'object' || v === null)) text = value.length ? value.join(', ') : 'none';
  else text = JSON.stringify(value);
  return text.length > VALUE_MAX ? `${text.slice(0, VALUE_MAX - 1)}…` : text;
}
