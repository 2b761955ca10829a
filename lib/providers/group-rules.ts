import { GROUP_NAME } from '../directory/groups.ts';
import { LEVELS } from '../levels.ts';

/**
 * How a provider's group names become Atrium group names (GROUP_RULES, or a provider's
 * `groupRules` in PROVIDERS). A rule is `pattern -> target`:
 *
 * - `Engineering -> engineering`: exactly that provider group (case-sensitive) to that Atrium group;
 * - `atrium-* -> *` or `atrium-* -> team-*`: every provider group starting with `atrium-`, the rest
 *   of its name (normalised, see `normalisedPart`) put where the target's `*` is;
 * - `* -> idp:*`: every provider group, one-to-one into the namespace `idp`.
 *
 * Every rule that matches adds its target; a provider group no rule matches is ignored. The
 * built-in level groups (admin, devel, ea, stable) are reached only by an exact rule that names
 * them (`Atrium Admins -> admin`): a wildcard rule that would produce one is skipped, so a provider
 * group that merely happens to be called `admin` never makes anyone an administrator.
 */
export interface GroupRule {
  /** The rule as written, for messages. */
  text: string;
  /** The provider group (exact) or the prefix before `*` (wildcard). */
  pattern: string;
  wildcard: boolean;
  /** The Atrium group, or the parts around the `*` for a wildcard rule. */
  target: string;
}

const BUILTIN_GROUPS: ReadonlySet<string> = new Set(LEVELS);
const ARROW = '->';
/** Rules a provider may have: a list anyone can read at a glance, not a program. */
export const MAX_RULES = 100;

/** Parses rules; every problem is returned (as text), none thrown, so the configuration lists them all. */
export function parseGroupRules(texts: string[], where: string): { rules: GroupRule[]; problems: string[] } {
  const rules: GroupRule[] = [];
  const problems: string[] = [];
  if (texts.length > MAX_RULES) problems.push(`${where}: at most ${MAX_RULES} rules, got ${texts.length}`);
  for (const text of texts.slice(0, MAX_RULES)) {
    const parsed = parseRule(text);
    if (typeof parsed === 'string') problems.push(`${where}: "${text.slice(0, 200)}" ${parsed}`);
    else rules.push(parsed);
  }
  return { rules, problems };
}

function parseRule(text: string): GroupRule | string {
  const at = text.indexOf(ARROW);
  if (at < 0 || text.indexOf(ARROW, at + ARROW.length) >= 0) return 'must be "provider group -> atrium group", e.g. "Engineering -> engineering" or "* -> idp:*"';
  const pattern = text.slice(0, at).trim();
  const target = text.slice(at + ARROW.length).trim();
  if (pattern === '') return 'names no provider group before "->" (use "*" for every group)';
  const stars = (pattern.match(/\*/g) ?? []).length;
  if (stars > 1 || (stars === 1 && !pattern.endsWith('*'))) return 'may hold one "*", at the end of the provider group (a prefix such as "atrium-*")';
  const wildcard = stars === 1;
  const targetStars = (target.match(/\*/g) ?? []).length;
  if (wildcard && targetStars !== 1) return 'maps a prefix: put one "*" in the Atrium group too, where the rest of the name goes ("atrium-* -> *", "* -> idp:*")';
  if (!wildcard && targetStars !== 0) return 'maps one provider group: its Atrium group cannot hold "*"';
  // A sample substitution must give a valid name, or the rule could never grant anything.
  const sample = wildcard ? target.replace('*', 'x') : target;
  if (!GROUP_NAME.test(sample)) return 'names an Atrium group that cannot exist: lowercase letters, digits, ".", "_" or "-", optionally after "namespace:"';
  return { text: text.trim(), pattern: wildcard ? pattern.slice(0, -1) : pattern, wildcard, target };
}

/** Splits GROUP_RULES: a JSON array of rules, or rules separated by ";" or new lines. */
export function splitRules(value: string): string[] | string {
  const trimmed = value.trim();
  if (trimmed.startsWith('[')) {
    try {
      const list: unknown = JSON.parse(trimmed);
      if (Array.isArray(list) && list.every((r) => typeof r === 'string')) return list as string[];
    } catch {
      // reported below
    }
    return 'a JSON value must be an array of rules (strings)';
  }
  return trimmed.split(/[;\n]/).map((r) => r.trim()).filter(Boolean);
}

/**
 * The part of a provider group name a wildcard moves into an Atrium name: lowercased, each run of
 * other characters than letters, digits, ".", "_" and "-" made one "-", trimmed of leading
 * punctuation (Keycloak's `/engineering/backend` → `engineering-backend`, `Data Team` → `data-team`).
 * Empty when nothing usable is left.
 */
export function normalisedPart(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[._-]+/, '')
    .replace(/-+$/, '');
}

export interface MappedGroups {
  /** Atrium group names, deduplicated, in the order first produced. */
  groups: string[];
  /** Provider groups a wildcard would have turned into a built-in level group: never granted. */
  refusedBuiltins: string[];
  /** Provider groups whose mapped name is no valid group name (too long, nothing left). */
  unusable: string[];
}

/** Applies the rules to a list of provider group names (already checked by readGroupsClaim). */
export function mapGroups(providerGroups: readonly string[], rules: readonly GroupRule[]): MappedGroups {
  const groups = new Set<string>();
  const refusedBuiltins = new Set<string>();
  const unusable = new Set<string>();
  for (const name of providerGroups) {
    for (const rule of rules) {
      if (!rule.wildcard) {
        if (name === rule.pattern) groups.add(rule.target);
        continue;
      }
      if (!name.startsWith(rule.pattern)) continue;
      const part = normalisedPart(name.slice(rule.pattern.length));
      const mapped = part === '' ? '' : rule.target.replace('*', part);
      if (!GROUP_NAME.test(mapped)) unusable.add(name);
      else if (BUILTIN_GROUPS.has(mapped)) refusedBuiltins.add(name);
      else groups.add(mapped);
    }
  }
  return { groups: [...groups], refusedBuiltins: [...refusedBuiltins], unusable: [...unusable] };
}

/** The rules a provider gets when it names a groups claim and no rules: one-to-one into its namespace. */
export function defaultRules(providerId: string): GroupRule[] {
  return [{ text: `* -> ${providerId}:*`, pattern: '', wildcard: true, target: `${providerId}:*` }];
}
