import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { ConfigError } from '../../lib/errors.ts';

/** The OS account `command` apps run as when APPS_USER is set: what spawn needs to switch to it. */
export interface AppProcessUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/**
 * Whether `command` apps are kept out of the portal's reach, for /readyz and the admin console
 * (production should warn when `isolated` is false). `reason` is one sentence for a human.
 */
export interface AppIsolation {
  appsUser: string | undefined;
  isolated: boolean;
  reason: string;
}

export interface AppProcessAccount {
  /** undefined: app processes run as the portal's own user (APPS_USER unset). */
  user: AppProcessUser | undefined;
  isolation: AppIsolation;
}

/**
 * Resolves APPS_USER once, at start-up. A name that cannot give real isolation (unknown, root, the
 * portal's own user, or a portal that cannot switch users) stops start-up: running apps as the
 * portal's user while the operator believes otherwise would be worse than not starting.
 */
export function resolveAppProcessAccount(appsUser: string | undefined): AppProcessAccount {
  const portalUser = currentUserName();
  if (appsUser === undefined) {
    return {
      user: undefined,
      isolation: {
        appsUser,
        isolated: false,
        reason: `APPS_USER is not set: command apps run as the portal's own user (${portalUser}) and can read its environment, database and keys`,
      },
    };
  }
  const fix = `create it (useradd --system --no-create-home --shell /usr/sbin/nologin ${appsUser}) or unset APPS_USER`;
  // geteuid is missing only on Windows, where there is nothing to switch to either.
  const euid = process.geteuid?.();
  if (euid !== 0) {
    throw new ConfigError([
      `APPS_USER: "${appsUser}" is set, but the portal runs as ${portalUser}${euid === undefined ? '' : ` (uid ${euid})`}, not root, so it cannot start apps as another user; run the portal as root (it starts apps as ${appsUser}) or unset APPS_USER`,
    ]);
  }
  const user = lookUpUser(appsUser);
  if (!user) throw new ConfigError([`APPS_USER: there is no OS user "${appsUser}" on this machine; ${fix}`]);
  if (user.uid === 0) {
    throw new ConfigError([`APPS_USER: "${appsUser}" has uid 0, root's, which can read everything of the portal's; name an unprivileged user such as atrium-apps`]);
  }
  if (user.gid === 0) {
    throw new ConfigError([`APPS_USER: "${appsUser}" has root's group (gid 0) as its primary group, which can read files meant for root; give it a group of its own`]);
  }
  return {
    user,
    isolation: {
      appsUser,
      isolated: true,
      reason: `command apps run as ${user.name} (uid ${user.uid}, gid ${user.gid}), not as the portal's user (${portalUser})`,
    },
  };
}

/** For messages only; a container may run under a uid the user database does not know. */
function currentUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.geteuid?.() ?? '?'}`;
  }
}

/**
 * The user database entry for `name`: `getent` first (it also sees LDAP or other NSS sources),
 * /etc/passwd where there is no getent. Called once at start-up, so a synchronous call is fine.
 */
function lookUpUser(name: string): AppProcessUser | undefined {
  let lines: string;
  try {
    lines = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (err) {
    // Exit status 2: getent ran and found no such user.
    if ((err as { status?: number }).status === 2) return undefined;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    lines = readFileSync('/etc/passwd', 'utf8');
  }
  for (const line of lines.split('\n')) {
    const [user, , uid, gid, , home] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined) {
      return { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
    }
  }
  return undefined;
}

/** Passed through from the portal's environment because no secret lives in them. */
const PASSED_VARIABLES = new Set([
  'PATH', 'LANG', 'LANGUAGE', 'TZ', 'TERM', 'NODE_ENV', 'TMPDIR', 'NO_COLOR', 'FORCE_COLOR',
  'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING',
  // Where the trusted CA certificates are: paths, and apps behind a corporate CA need them.
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'NODE_EXTRA_CA_CERTS',
]);
const PASSED_PREFIXES = ['LC_'];
/** Who the process is: the apps user's own when isolated, else the portal's. */
const IDENTITY_VARIABLES = ['HOME', 'USER', 'LOGNAME'] as const;

/**
 * The environment of an app process: an allow-list, not the portal's environment minus its known
 * secrets, so a variable added to the portal later (a new secret, a cloud credential injected by
 * the platform) stays out of apps without anyone remembering to deny it.
 */
export function appEnvironment(portalEnv: NodeJS.ProcessEnv, user: AppProcessUser | undefined, port: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(portalEnv)) {
    if (value === undefined) continue;
    if (PASSED_VARIABLES.has(name) || PASSED_PREFIXES.some((p) => name.startsWith(p))) env[name] = value;
  }
  if (user) {
    Object.assign(env, { HOME: user.home, USER: user.name, LOGNAME: user.name });
  } else {
    for (const name of IDENTITY_VARIABLES) if (portalEnv[name] !== undefined) env[name] = portalEnv[name];
  }
  env.PORT = String(port);
  return env;
}
