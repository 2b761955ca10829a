import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { defaultRules, parseGroupRules, splitRules, type GroupRule } from './group-rules.ts';

/** One identity provider the portal signs people in with. */
export interface ProviderConfig {
  /** Short name: the sign-in chooser's link (`/login?provider=<id>`), the namespace of its default group rule, the console's "managed by". */
  id: string;
  /** What the chooser calls it. */
  title: string;
  /** The embedded provider at /idp (local accounts), or an external one. */
  embedded: boolean;
  /** External only. */
  issuer: URL | undefined;
  clientId: string;
  clientSecret: string | undefined;
  audience: string | undefined;
  scope: string;
  accessClaim: string;
  /** Where the user's provider groups are (GROUPS_CLAIM); undefined: the provider's groups are not read. */
  groupsClaim: string | undefined;
  groupRules: GroupRule[];
  logoutUrl: string | undefined;
  /**
   * What goes before the provider's `sub` to make the Atrium subject: '' for the embedded provider
   * and the first external one (a one-provider set-up keeps its subjects), `<id>|` for the others,
   * so that apps, which know people by subject, never take two providers' users for one.
   */
  subjectPrefix: string;
}

export const PROVIDER_ID = /^[a-z0-9][a-z0-9_-]{0,29}$/;
export const DEFAULT_SCOPE = 'openid profile email offline_access';
export const EMBEDDED_CLIENT_ID = 'atrium-portal';

/** One entry of PROVIDERS / PROVIDERS_FILE. Unknown keys are refused: a typo must not go unnoticed. */
const providerEntry = z
  .object({
    id: z.string().regex(PROVIDER_ID, 'an id is 1-30 lowercase letters, digits, "_" or "-"'),
    title: z.string().trim().min(1).max(80).optional(),
    embedded: z.literal(true).optional(),
    issuer: z.string().optional(),
    clientId: z.string().min(1).max(255).optional(),
    clientSecret: z.string().min(1).max(1024).optional(),
    /** The name of an environment variable holding the secret, to keep it out of the file. */
    clientSecretEnv: z.string().regex(/^[A-Z_][A-Z0-9_]{0,99}$/, 'an environment variable name').optional(),
    audience: z.string().min(1).max(2048).optional(),
    scope: z.string().min(1).max(2048).optional(),
    accessClaim: z.string().min(1).max(200).optional(),
    groupsClaim: z.string().min(1).max(200).optional(),
    groupRules: z.array(z.string().max(500)).optional(),
    logoutUrl: z.string().optional(),
  })
  .strict();

export interface SingleProviderSettings {
  issuer: string | undefined;
  clientId: string | undefined;
  clientSecret: string | undefined;
  audience: string | undefined;
  scope: string | undefined;
  accessClaim: string | undefined;
  groupsClaim: string | undefined;
  groupRules: string | undefined;
  logoutUrl: string | undefined;
}

interface Context {
  problems: string[];
  production: boolean;
  allowHttp: boolean;
  env: NodeJS.ProcessEnv;
}

function url(name: string, value: string, ctx: Context): URL | undefined {
  try {
    const parsed = new URL(value);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      ctx.problems.push(`${name}: must be an http(s) URL, got "${value}"`);
      return undefined;
    }
    if (ctx.production && parsed.protocol === 'http:' && !ctx.allowHttp) ctx.problems.push(`${name}: production needs an https issuer; set ALLOW_HTTP=1 to allow http`);
    return parsed;
  } catch {
    ctx.problems.push(`${name}: "${value}" is not a URL`);
    return undefined;
  }
}

function checkScope(name: string, scope: string, ctx: Context): void {
  if (!scope.split(/\s+/).includes('openid')) ctx.problems.push(`${name}: must include "openid", got "${scope}"`);
}

function rules(name: string, id: string, groupsClaim: string | undefined, texts: string[] | undefined, ctx: Context): GroupRule[] {
  if (texts === undefined) return groupsClaim ? defaultRules(id) : [];
  if (!groupsClaim) ctx.problems.push(`${name}: group rules need a groups claim to read (GROUPS_CLAIM, or "groupsClaim" in PROVIDERS)`);
  const parsed = parseGroupRules(texts, name);
  ctx.problems.push(...parsed.problems);
  return parsed.rules;
}

/** The one provider of a set-up without PROVIDERS: OIDC_ISSUER's, or the embedded one. */
export function singleProvider(s: SingleProviderSettings, ctx: Context): ProviderConfig {
  const issuer = s.issuer === undefined ? undefined : url('OIDC_ISSUER', s.issuer, ctx);
  if (s.issuer !== undefined && !s.clientId) ctx.problems.push('OIDC_CLIENT_ID: required when OIDC_ISSUER is set');
  if (s.issuer === undefined && (s.clientId || s.clientSecret)) ctx.problems.push('OIDC_CLIENT_ID/OIDC_CLIENT_SECRET: set OIDC_ISSUER too, or unset both to use the embedded provider');
  if (s.issuer === undefined && s.groupsClaim) ctx.problems.push('GROUPS_CLAIM: the embedded provider has no groups of its own (its users are in the directory); set OIDC_ISSUER, or PROVIDERS');
  const scope = s.scope ?? DEFAULT_SCOPE;
  checkScope('OIDC_SCOPE', scope, ctx);
  if (s.logoutUrl !== undefined) url('OIDC_LOGOUT_URL', s.logoutUrl.replace(/\{(returnTo|clientId)\}/g, 'x'), { ...ctx, production: false });
  let ruleTexts: string[] | undefined;
  if (s.groupRules !== undefined) {
    const split = splitRules(s.groupRules);
    if (typeof split === 'string') ctx.problems.push(`GROUP_RULES: ${split}`);
    else ruleTexts = split;
  }
  const id = s.issuer === undefined ? 'local' : 'idp';
  return {
    id,
    title: s.issuer === undefined ? 'Atrium account' : 'Single sign-on',
    embedded: s.issuer === undefined,
    issuer,
    clientId: s.clientId ?? EMBEDDED_CLIENT_ID,
    clientSecret: s.clientSecret,
    audience: s.audience,
    scope,
    accessClaim: s.accessClaim ?? 'scope',
    groupsClaim: s.groupsClaim,
    groupRules: rules('GROUP_RULES', id, s.groupsClaim, ruleTexts, ctx),
    logoutUrl: s.logoutUrl,
    subjectPrefix: '',
  };
}

/** PROVIDERS (a JSON array) or PROVIDERS_FILE (a JSON file holding one): several providers side by side. */
export function severalProviders(source: { name: string; text: string }, ctx: Context): ProviderConfig[] {
  let value: unknown;
  try {
    value = JSON.parse(source.text);
  } catch (err) {
    ctx.problems.push(`${source.name}: not JSON (${(err as Error).message})`);
    return [];
  }
  const parsed = z.array(providerEntry).min(1).max(20).safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) ctx.problems.push(`${source.name}${issue.path.map((p) => `[${JSON.stringify(p)}]`).join('')}: ${issue.message}`);
    return [];
  }
  const providers: ProviderConfig[] = [];
  let externals = 0;
  for (const [i, entry] of parsed.data.entries()) {
    const name = `${source.name}[${i}] (${entry.id})`;
    if (providers.some((p) => p.id === entry.id)) ctx.problems.push(`${name}: another provider has the id "${entry.id}"`);
    if (entry.embedded) {
      if (providers.some((p) => p.embedded)) ctx.problems.push(`${name}: only one embedded provider can be listed`);
      const extra = (['issuer', 'clientId', 'clientSecret', 'clientSecretEnv', 'audience', 'groupsClaim', 'groupRules', 'logoutUrl'] as const).filter((k) => entry[k] !== undefined);
      if (extra.length > 0) ctx.problems.push(`${name}: the embedded provider takes only id, title, scope and accessClaim, not ${extra.join(', ')}`);
      const scope = entry.scope ?? DEFAULT_SCOPE;
      checkScope(name, scope, ctx);
      providers.push({ id: entry.id, title: entry.title ?? 'Atrium account', embedded: true, issuer: undefined, clientId: EMBEDDED_CLIENT_ID, clientSecret: undefined, audience: undefined, scope, accessClaim: entry.accessClaim ?? 'scope', groupsClaim: undefined, groupRules: [], logoutUrl: undefined, subjectPrefix: '' });
      continue;
    }
    if (!entry.issuer) ctx.problems.push(`${name}: "issuer" is required (or "embedded": true)`);
    if (!entry.clientId) ctx.problems.push(`${name}: "clientId" is required`);
    const issuer = entry.issuer ? url(`${name} issuer`, entry.issuer, ctx) : undefined;
    if (issuer && providers.some((p) => p.issuer?.href === issuer.href)) ctx.problems.push(`${name}: another provider has the issuer ${issuer.href}`);
    if (entry.clientSecret && entry.clientSecretEnv) ctx.problems.push(`${name}: give "clientSecret" or "clientSecretEnv", not both`);
    let clientSecret = entry.clientSecret;
    if (entry.clientSecretEnv) {
      clientSecret = ctx.env[entry.clientSecretEnv]?.trim() || undefined;
      if (!clientSecret) ctx.problems.push(`${name}: clientSecretEnv names ${entry.clientSecretEnv}, which is not set`);
    }
    const scope = entry.scope ?? DEFAULT_SCOPE;
    checkScope(name, scope, ctx);
    if (entry.logoutUrl !== undefined) url(`${name} logoutUrl`, entry.logoutUrl.replace(/\{(returnTo|clientId)\}/g, 'x'), { ...ctx, production: false });
    providers.push({
      id: entry.id,
      title: entry.title ?? entry.id,
      embedded: false,
      issuer,
      clientId: entry.clientId ?? '',
      clientSecret,
      audience: entry.audience,
      scope,
      accessClaim: entry.accessClaim ?? 'scope',
      groupsClaim: entry.groupsClaim,
      groupRules: rules(name, entry.id, entry.groupsClaim, entry.groupRules, ctx),
      logoutUrl: entry.logoutUrl,
      subjectPrefix: externals === 0 ? '' : `${entry.id}|`,
    });
    externals += 1;
  }
  return providers;
}

/** PROVIDERS_FILE's text, or a problem. */
export function readProvidersFile(path: string, problems: string[]): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    problems.push(`PROVIDERS_FILE: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return undefined;
  }
}
