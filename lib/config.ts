import { z } from 'zod';
import { parseAppOrigin, type AppOriginPattern } from './apps/origins.ts';
import { ConfigError } from './errors.ts';
import { readProvidersFile, severalProviders, singleProvider, type ProviderConfig } from './providers/provider-config.ts';

/**
 * The portal's whole configuration, read once from the environment (and `.env`, loaded by the
 * caller). Every problem is collected and reported together, each with how to fix it.
 */

const booleanFlag = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', ''])
  .optional()
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

/** Like durationSeconds, but 0 is allowed (e.g. "no drain delay"). */
const durationSecondsOrZero = (fallback: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return fallback;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number of seconds, 0 or more, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

const durationSeconds = (fallback: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return fallback;
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number of seconds above 0, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

const rawSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return 3000;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) {
        ctx.addIssue({ code: 'custom', message: `must be a port number 0-65535, got "${v}"` });
        return z.NEVER;
      }
      return n;
    }),
  HOST: optionalString,
  PUBLIC_URL: optionalString,
  APPS_DIR: optionalString,
  APP_ORIGIN: optionalString,
  APPS_USER: optionalString,
  DATA_DIR: optionalString,
  DATABASE_URL: optionalString,
  REDIS_URL: optionalString,
  SESSION_SECRET: optionalString,
  SESSION_IDLE_TIMEOUT: durationSeconds(2 * 60 * 60),
  SESSION_MAX_LIFETIME: durationSeconds(12 * 60 * 60),
  IDP_ACCESS_TOKEN_TTL: durationSeconds(10 * 60),
  OIDC_LOGOUT_URL: optionalString,
  OIDC_ISSUER: optionalString,
  OIDC_CLIENT_ID: optionalString,
  OIDC_CLIENT_SECRET: optionalString,
  OIDC_AUDIENCE: optionalString,
  OIDC_SCOPE: optionalString,
  ACCESS_CLAIM: optionalString,
  // Provider groups and several providers (issue 14): lib/providers/.
  GROUPS_CLAIM: optionalString,
  GROUP_RULES: optionalString,
  PROVIDERS: optionalString,
  PROVIDERS_FILE: optionalString,
  ALLOW_HTTP: booleanFlag,
  IDP_HOOK_SECRET: optionalString,
  // Above the idle timeouts of the common balancers (AWS ALB 60 s, nginx upstream keep-alive 60 s,
  // its client keep-alive 75 s): the balancer, not the portal, closes an idle connection first.
  KEEP_ALIVE_TIMEOUT: durationSeconds(90),
  STOP_DRAIN_DELAY: durationSecondsOrZero(0),
  STOP_TIMEOUT: durationSeconds(10),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // When the database is down or hung (issue 11): how long one wait on MySQL may last (connect, a
  // pooled connection, a query) before the request gets a 503; how long start-up keeps retrying a
  // database that does not answer; how long signed-in users keep working from their last good
  // session while the session store cannot be read (0: not at all).
  DATABASE_TIMEOUT: durationSeconds(5),
  DATABASE_START_TIMEOUT: durationSecondsOrZero(60),
  SESSION_OUTAGE_GRACE: durationSecondsOrZero(300),
  // Seconds an upstream app may leave a request without an answer before the visitor gets the 502
  // page and the connection to the app is closed: short, so a hung app holds nobody for long.
  UPSTREAM_TIMEOUT: durationSeconds(30),
});

export type DatabaseTarget =
  | { kind: 'sqlite'; file: string }
  | { kind: 'mysql'; url: string; database: string };

export interface Config {
  env: 'development' | 'production' | 'test';
  port: number;
  host: string;
  publicUrl: URL;
  /** Whether cookies get `Secure` (the public URL is https). */
  secureCookies: boolean;
  appsDir: string;
  /** APP_ORIGIN: each app on its own origin; undefined: apps share the portal's origin under /apps/. */
  appOrigin: AppOriginPattern | undefined;
  /** APPS_USER: the OS user `command` apps run as (the portal must be able to switch to it). */
  appsUser: string | undefined;
  dataDir: string;
  database: DatabaseTarget;
  redisUrl: string | undefined;
  /** Cookie signing keys, newest first; undefined in development means "generate and keep one". */
  sessionKeys: string[] | undefined;
  /** A session unused this long ends (rolling). */
  sessionIdleSeconds: number;
  /** A session ends this long after sign-in, however active. */
  sessionLifetimeSeconds: number;
  /** Access-token lifetime of the embedded provider (short: the portal refreshes silently). */
  idpAccessTokenTtlSeconds: number;
  /**
   * Every provider people sign in with, in the order the sign-in chooser lists them: from PROVIDERS
   * or PROVIDERS_FILE, else the one OIDC_ISSUER names (or the embedded one). `oidc` below is the
   * first of them as before, for what knows only one provider.
   */
  providers: ProviderConfig[];
  /**
   * The first provider's settings, for what knows only one: `issuer` undefined for the embedded
   * provider at `/idp`; `logoutUrl` where to sign out at a provider that does not advertise an
   * end_session_endpoint (Auth0's /v2/logout; `{returnTo}` and `{clientId}` are filled in).
   */
  oidc: Pick<ProviderConfig, 'issuer' | 'clientId' | 'clientSecret' | 'audience' | 'scope' | 'accessClaim' | 'logoutUrl'>;
  /** HMAC key for `POST /hooks/idp`; undefined: the webhook is off (404). */
  hookSecret: string | undefined;
  /** How long an idle kept-alive connection stays open (header timeout a little above it). */
  keepAliveSeconds: number;
  /** On SIGTERM: how long /readyz says 503 while the listener still takes requests (a balancer's probe interval). */
  stopDrainDelaySeconds: number;
  /** On SIGTERM: how long requests in flight may take before their connections are cut. */
  stopTimeoutSeconds: number;
  logLevel: string;
  /** MySQL: the longest one wait on the database lasts (connect, a pooled connection, a query). */
  databaseTimeoutSeconds: number;
  /** How long start-up retries a database that does not answer before it gives up (0: one attempt). */
  databaseStartTimeoutSeconds: number;
  /** How long a signed-in session is served from its last good copy while the store cannot be read. */
  sessionOutageGraceSeconds: number;
  /** UPSTREAM_TIMEOUT: how long an upstream app may take to start answering a request. */
  upstreamTimeoutSeconds: number;
}

export { EMBEDDED_CLIENT_ID } from './providers/provider-config.ts';

function parseDatabaseUrl(value: string, problems: string[]): DatabaseTarget {
  if (value.startsWith('sqlite:')) {
    const file = value.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (file === '') problems.push('DATABASE_URL: "sqlite:" needs a file, e.g. sqlite:data/atrium.sqlite');
    return { kind: 'sqlite', file };
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push(`DATABASE_URL: "${redact(value)}" is not a URL; use sqlite:<file> or mysql://user:pass@host:port/db`);
    return { kind: 'sqlite', file: '' };
  }
  if (url.protocol !== 'mysql:' && url.protocol !== 'mariadb:') {
    problems.push(`DATABASE_URL: unsupported scheme "${url.protocol}"; use sqlite:<file> or mysql://user:pass@host:port/db`);
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_$-]{1,64}$/.test(database)) {
    problems.push('DATABASE_URL: name the database in the path, e.g. mysql://root@127.0.0.1:3306/atrium');
  }
  return { kind: 'mysql', url: value, database };
}

/** Hides a password in a URL before it goes into an error message. */
export function redact(value: string): string {
  return value.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
}

function parseUrl(name: string, value: string, problems: string[]): URL | undefined {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push(`${name}: must be an http(s) URL, got "${value}"`);
      return undefined;
    }
    return url;
  } catch {
    problems.push(`${name}: "${value}" is not a URL`);
    return undefined;
  }
}

type RawConfig = z.output<typeof rawSchema>;

/**
 * Parses variable by variable so that one bad value does not hide the problems of the others;
 * a variable that fails falls back to its default only to let the remaining checks run.
 */
function parseEachVariable(env: NodeJS.ProcessEnv, problems: string[]): RawConfig {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(rawSchema.shape)) {
    const result = (schema as z.ZodType).safeParse(env[name]);
    if (result.success) {
      out[name] = result.data;
    } else {
      for (const issue of result.error.issues) problems.push(`${name}: ${issue.message}`);
      out[name] = (schema as z.ZodType).safeParse(undefined).data;
    }
  }
  return out as RawConfig;
}

/**
 * PROVIDERS or PROVIDERS_FILE (several providers), else the single-provider variables, which keep
 * working as they always have. Mixing the two would leave it unclear which wins, so it is refused.
 */
function parseProviders(raw: RawConfig, ctx: { problems: string[]; production: boolean; allowHttp: boolean; env: NodeJS.ProcessEnv }): ProviderConfig[] {
  const { problems } = ctx;
  const several = raw.PROVIDERS ?? raw.PROVIDERS_FILE;
  if (raw.PROVIDERS !== undefined && raw.PROVIDERS_FILE !== undefined) problems.push('PROVIDERS/PROVIDERS_FILE: set one of them, not both');
  if (several !== undefined) {
    const single = (['OIDC_ISSUER', 'OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_SCOPE', 'ACCESS_CLAIM', 'GROUPS_CLAIM', 'GROUP_RULES', 'OIDC_LOGOUT_URL'] as const).filter((k) => raw[k] !== undefined);
    if (single.length > 0) problems.push(`PROVIDERS: also set are ${single.join(', ')}; with PROVIDERS each provider's settings go in its entry (issuer, clientId, clientSecret, scope, accessClaim, groupsClaim, groupRules, logoutUrl)`);
    const text = raw.PROVIDERS ?? readProvidersFile(raw.PROVIDERS_FILE as string, problems);
    if (text === undefined) return [];
    return severalProviders({ name: raw.PROVIDERS !== undefined ? 'PROVIDERS' : 'PROVIDERS_FILE', text }, ctx);
  }
  return [
    singleProvider(
      {
        issuer: raw.OIDC_ISSUER,
        clientId: raw.OIDC_CLIENT_ID,
        clientSecret: raw.OIDC_CLIENT_SECRET,
        audience: raw.OIDC_AUDIENCE,
        scope: raw.OIDC_SCOPE,
        accessClaim: raw.ACCESS_CLAIM,
        groupsClaim: raw.GROUPS_CLAIM,
        groupRules: raw.GROUP_RULES,
        logoutUrl: raw.OIDC_LOGOUT_URL,
      },
      ctx,
    ),
  ];
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const raw = parseEachVariable(env, problems);
  const production = raw.NODE_ENV === 'production';

  const port = raw.PORT;
  const publicUrl =
    parseUrl('PUBLIC_URL', raw.PUBLIC_URL ?? `http://localhost:${port}`, problems) ?? new URL('http://localhost');
  if (publicUrl.pathname !== '/' || publicUrl.search || publicUrl.hash) {
    problems.push(`PUBLIC_URL: give only the origin (scheme, host, port), e.g. https://atrium.example.com; got "${raw.PUBLIC_URL}"`);
  }
  if (publicUrl.username || publicUrl.password) problems.push('PUBLIC_URL: must not contain credentials');
  if (production && publicUrl.protocol === 'http:' && !raw.ALLOW_HTTP) {
    problems.push('PUBLIC_URL: production needs an https URL (cookies must be Secure); set ALLOW_HTTP=1 only if a TLS proxy is not possible');
  }

  const sessionKeys = raw.SESSION_SECRET?.split(',').map((k) => k.trim()).filter(Boolean);
  if (sessionKeys) {
    sessionKeys.forEach((key, i) => {
      if (key.length < 32) problems.push(`SESSION_SECRET: key ${i + 1} is ${key.length} characters; use at least 32 random characters (openssl rand -hex 32)`);
    });
  } else if (production) {
    problems.push('SESSION_SECRET: required in production (comma-separated keys, newest first; openssl rand -hex 32)');
  }

  // The SQLite file lives with the rest of the portal's data unless DATABASE_URL says otherwise.
  const database = parseDatabaseUrl(raw.DATABASE_URL ?? `sqlite:${raw.DATA_DIR ?? 'data'}/atrium.sqlite`, problems);

  if (raw.REDIS_URL !== undefined && !/^rediss?:\/\//.test(raw.REDIS_URL)) {
    problems.push(`REDIS_URL: must start with redis:// or rediss://, got "${redact(raw.REDIS_URL)}"`);
  }

  const providers = parseProviders(raw, { problems, production, allowHttp: raw.ALLOW_HTTP, env });
  const main = providers.find((p) => p.embedded) ?? providers[0];
  const several = raw.PROVIDERS !== undefined || raw.PROVIDERS_FILE !== undefined;

  if (raw.SESSION_IDLE_TIMEOUT > raw.SESSION_MAX_LIFETIME) {
    problems.push(`SESSION_IDLE_TIMEOUT (${raw.SESSION_IDLE_TIMEOUT}s) is longer than SESSION_MAX_LIFETIME (${raw.SESSION_MAX_LIFETIME}s); make it shorter`);
  }
  if (raw.IDP_HOOK_SECRET !== undefined && raw.IDP_HOOK_SECRET.length < 32) {
    problems.push('IDP_HOOK_SECRET: use at least 32 random characters (openssl rand -hex 32)');
  }

  let appOrigin: AppOriginPattern | undefined;
  if (raw.APP_ORIGIN !== undefined) {
    const parsed = parseAppOrigin(raw.APP_ORIGIN);
    if (typeof parsed === 'string') problems.push(`APP_ORIGIN: ${parsed}`);
    else {
      appOrigin = parsed;
      if (production && parsed.protocol === 'http:' && !raw.ALLOW_HTTP) problems.push('APP_ORIGIN: production needs https app origins; set ALLOW_HTTP=1 only if a TLS proxy is not possible');
      if (parsed.protocol !== publicUrl.protocol) problems.push(`APP_ORIGIN: use the same scheme as PUBLIC_URL (${publicUrl.protocol}//…), got "${raw.APP_ORIGIN}"`);
      if (`.${publicUrl.hostname}`.endsWith(parsed.hostSuffix)) {
        problems.push(`APP_ORIGIN: the portal's host ${publicUrl.hostname} must not itself look like an app host (*${parsed.hostSuffix}); put apps under a domain of their own, e.g. https://{tier}-{name}.apps.example.com`);
      }
    }
  }
  if (raw.APPS_USER !== undefined && !/^[a-z_][a-z0-9_-]{0,31}$/.test(raw.APPS_USER)) {
    problems.push(`APPS_USER: must be an OS user name (lowercase letters, digits, "_" or "-"), got "${raw.APPS_USER}"`);
  }

  if (problems.length > 0) throw new ConfigError(problems);

  return {
    env: raw.NODE_ENV,
    port,
    host: raw.HOST ?? (production ? '0.0.0.0' : '127.0.0.1'),
    publicUrl,
    secureCookies: publicUrl.protocol === 'https:',
    appsDir: raw.APPS_DIR ?? 'apps',
    appOrigin,
    appsUser: raw.APPS_USER,
    dataDir: raw.DATA_DIR ?? 'data',
    database,
    redisUrl: raw.REDIS_URL,
    sessionKeys,
    sessionIdleSeconds: raw.SESSION_IDLE_TIMEOUT,
    sessionLifetimeSeconds: raw.SESSION_MAX_LIFETIME,
    idpAccessTokenTtlSeconds: raw.IDP_ACCESS_TOKEN_TTL,
    providers,
    // With an embedded provider among several, this describes it: it is the one at /idp.
    oidc: {
      issuer: main?.embedded ? undefined : main?.issuer,
      clientId: main?.clientId ?? '',
      clientSecret: main?.clientSecret,
      audience: main?.embedded && several ? undefined : main?.audience,
      scope: main?.scope ?? '',
      accessClaim: main?.accessClaim ?? 'scope',
      logoutUrl: main?.logoutUrl,
    },
    hookSecret: raw.IDP_HOOK_SECRET,
    keepAliveSeconds: raw.KEEP_ALIVE_TIMEOUT,
    stopDrainDelaySeconds: raw.STOP_DRAIN_DELAY,
    stopTimeoutSeconds: raw.STOP_TIMEOUT,
    logLevel: raw.LOG_LEVEL,
    databaseTimeoutSeconds: raw.DATABASE_TIMEOUT,
    databaseStartTimeoutSeconds: raw.DATABASE_START_TIMEOUT,
    sessionOutageGraceSeconds: raw.SESSION_OUTAGE_GRACE,
    upstreamTimeoutSeconds: raw.UPSTREAM_TIMEOUT,
  };
}
