import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Database } from './db/schema.ts';
import { AccessIndex } from './directory/access.ts';
import { DirectoryAdmin } from './directory/admin.ts';
import { AuditLog } from './directory/audit.ts';
import { GroupDirectory } from './directory/groups.ts';
import { UserDirectory } from './directory/users.ts';
import { AtriumError, BadRequestError } from './errors.ts';
import { isLevel, LEVELS, scopesForLevel, type Level } from './levels.ts';
import { embeddedProviderSessions, idpSidOf } from './sessions/provider-sessions.ts';
import { SqlSessionStore } from './sessions/sql-store.ts';
import type { SessionStore } from './sessions/store.ts';
import { forgetAccount, listMachineClients, registerMachineClient, removeMachineClient } from './db/oidc-payloads.ts';
import { FactorDirectory } from './factors/factor-directory.ts';

export const USAGE = `Usage: npm run atrium -- <command> [options]

  users list [--query TEXT]                     list users (newest first)
  users add <email> [--name N] [--password-file F]
                                                create a local account (password read from F)
  users disable <email> | users enable <email>  block or unblock sign-in; disabling ends sessions
  users reset-link <email> [--hours H]          a one-time link to set a new password (local
                                                accounts; valid H hours, default 24); shown once
  users reset-factors <email>                   remove every second factor and recovery code of
                                                a local account (a lost device), and end its sessions
  groups list                                   groups, levels and nesting
  groups create <name> [--level L] [--description D]
  groups delete <name>
  groups require-factor <name> [--off]          members must sign in with a second factor
                                                (--off: no longer)
  groups nest <child> <parent>                  members of <child> inherit <parent>
  groups unnest <child> <parent>
  members add <group> <email>
  members remove <group> <email>
  whois <email>                                 effective level and the groups that grant it
                                                (--json: each group with \`through\`, the group
                                                before it on a shortest path, and its \`depth\`)
  sessions list <email>                         a user's active sessions
  sessions revoke <email> [--session ID]        end all of a user's sessions (or one), with the
                                                embedded provider's sessions behind them
  clients add <name> --level L                  a machine client of the embedded provider
                                                (client-credentials grant); prints id and secret once
  clients list | clients remove <client-id>

Options: --json (machine-readable output), --help.
Levels: ${LEVELS.join(', ')}. Exit codes: 0 ok, 1 refused (not found, conflict, invalid), 2 usage error.`;

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

class UsageError extends Error {}

/** The password in a file (its last newline dropped); an unreadable file is the caller's mistake, told as one. */
async function readPasswordFile(path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new BadRequestError(`cannot read the password file ${path}: ${reason}`, { cause: err, code: 'password_file_unreadable' });
  }
}

/** Runs one admin command against `database`; returns the process exit code. */
export async function runCli(
  argv: string[],
  database: Database,
  io: CliIo,
  actor: string,
  sessions: SessionStore = new SqlSessionStore(database),
  /** Where reset links point: PUBLIC_URL, as the portal reads it (its default when unset). */
  publicUrl: string = process.env.PUBLIC_URL || `http://localhost:${process.env.PORT || 3000}`,
): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { positionals, values } = parsed;
  if (values.help || positionals.length === 0) {
    (values.help ? io.out : io.err)(USAGE);
    return values.help ? 0 : 2;
  }
  const users = new UserDirectory(database);
  const groups = new GroupDirectory(database);
  const admin = new DirectoryAdmin({
    database,
    users,
    groups,
    audit: new AuditLog(database),
    sessions,
    onDisable: (sub) => forgetAccount(database, sub),
  });
  // Revoked sessions take the embedded provider's with them, or its cookie would sign the browser
  // straight back in. (With an external provider there are none of these records: a no-op.)
  const providerSessions = embeddedProviderSessions(database);
  const json = values.json === true;
  const print = (data: unknown, text: () => string) => io.out(json ? JSON.stringify(data, null, 2) : text());

  try {
    const [noun, verb, ...rest] = positionals;
    const arg = (i: number, name: string) => {
      const value = rest[i];
      if (value === undefined || value === '') throw new UsageError(`missing <${name}>`);
      return value;
    };
    const command = noun === 'whois' ? 'whois' : `${noun} ${verb ?? ''}`.trim();
    switch (command) {
      case 'users list': {
        const { users: found, total } = await users.search({ query: values.query, page: 1, pageSize: 1000 });
        const index = await AccessIndex.load(database);
        const rows = found.map((u) => ({ id: u.id, email: u.email, name: u.name, sub: u.sub, level: index.grantFor(u.id).level, disabled: u.disabled, lastLoginAt: u.lastLoginAt }));
        print({ total, users: rows }, () => rows.map((r) => `${String(r.id).padStart(5)}  ${(r.email ?? r.sub).padEnd(32)} ${(r.level ?? '-').padEnd(7)}${r.disabled ? ' disabled' : ''}`).join('\n') || 'No users.');
        return 0;
      }
      case 'users add': {
        const email = arg(0, 'email');
        const password = values['password-file'] ? await readPasswordFile(values['password-file']) : undefined;
        const user = await admin.addLocalUser(actor, { email, name: values.name, password });
        print({ id: user.id, email: user.email, sub: user.sub }, () => `Created ${user.email} (id ${user.id})${password ? '' : ' without a password: it cannot sign in until one is set'}.`);
        return 0;
      }
      case 'users disable':
      case 'users enable': {
        const user = await admin.setDisabled(actor, arg(0, 'email'), verb === 'disable');
        print({ id: user.id, email: user.email, disabled: user.disabled }, () => `${user.email ?? user.sub} is ${user.disabled ? 'disabled; its sessions have ended' : 'enabled'}.`);
        return 0;
      }
      case 'users reset-link': {
        const hours = values.hours === undefined ? undefined : Number(values.hours);
        if (hours !== undefined && !(Number.isFinite(hours) && hours > 0)) throw new UsageError('--hours must be a positive number of hours');
        const { user, token, expiresAt } = await admin.issueResetLink(actor, arg(0, 'email'), { hours });
        const link = `${new URL(publicUrl).origin}/reset/${token}`;
        print({ user: user.email ?? user.sub, link, expiresAt: new Date(expiresAt).toISOString() }, () =>
          [
            `Reset link for ${user.email ?? user.sub} (one use, until ${new Date(expiresAt).toISOString()}):`,
            `  ${link}`,
            'It is shown only now: give it to the user over a channel you trust.',
          ].join('\n'),
        );
        return 0;
      }
      case 'groups list': {
        const [list, edges] = await Promise.all([groups.list(), groups.edges()]);
        const rows = list.map((g) => ({ ...g, parents: edges.filter((e) => e.child === g.name).map((e) => e.parent) }));
        print({ groups: rows }, () => rows.map((g) => `${g.name.padEnd(24)} ${(g.level ?? '-').padEnd(7)} ${g.parents.length ? `⊂ ${g.parents.join(', ')}` : ''}${g.builtin ? '  (built-in)' : ''}`).join('\n'));
        return 0;
      }
      case 'groups create': {
        const level = values.level;
        if (level !== undefined && !isLevel(level)) throw new UsageError(`--level must be one of ${LEVELS.join(', ')}`);
        const group = await admin.createGroup(actor, { name: arg(0, 'name'), level: (level as Level | undefined) ?? null, description: values.description });
        print(group, () => `Created group ${group.name}${group.level ? ` granting ${group.level}` : ''}.`);
        return 0;
      }
      case 'users reset-factors': {
        const user = await admin.resolveUser(arg(0, 'email'));
        const removed = await new FactorDirectory({ database, access: await AccessIndex.load(database), audit: new AuditLog(database) }).resetAll(actor, user);
        // As in the console: the lost device's sessions end with its factors.
        const ended = await admin.revokeSessions(actor, user.id);
        print({ user: user.email ?? user.sub, removed, sessionsEnded: ended }, () => `Removed ${removed} second factor${removed === 1 ? '' : 's'} and the recovery codes of ${user.email ?? user.sub}; ended ${ended} session(s).`);
        return 0;
      }
      case 'groups require-factor': {
        const name = arg(0, 'name');
        const required = values.off !== true;
        await new FactorDirectory({ database, access: await AccessIndex.load(database), audit: new AuditLog(database) }).setGroupRequirement(actor, name, required);
        print({ group: name, secondFactorRequired: required }, () => (required ? `Members of ${name} must now sign in with a second factor.` : `Members of ${name} no longer need a second factor.`));
        return 0;
      }
      case 'groups delete': {
        const name = arg(0, 'name');
        await admin.deleteGroup(actor, name);
        print({ deleted: name }, () => `Deleted group ${name}.`);
        return 0;
      }
      case 'groups nest':
      case 'groups unnest': {
        const child = arg(0, 'child');
        const parent = arg(1, 'parent');
        if (verb === 'nest') await admin.nest(actor, child, parent);
        else await admin.unnest(actor, child, parent);
        print({ child, parent, nested: verb === 'nest' }, () => (verb === 'nest' ? `Members of ${child} now inherit ${parent}.` : `${child} no longer inherits ${parent}.`));
        return 0;
      }
      case 'members add':
      case 'members remove': {
        const group = arg(0, 'group');
        const user = verb === 'add' ? await admin.addMember(actor, group, arg(1, 'email')) : await admin.removeMember(actor, group, arg(1, 'email'));
        print({ group, user: user.email ?? user.sub, member: verb === 'add' }, () => `${user.email ?? user.sub} ${verb === 'add' ? 'added to' : 'removed from'} ${group}.`);
        return 0;
      }
      case 'clients add': {
        const name = arg(0, 'name');
        if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(name)) throw new UsageError('a client name is 1-41 lowercase letters, digits and dashes');
        const level = values.level;
        if (!isLevel(level)) throw new UsageError(`--level is required: one of ${LEVELS.join(', ')}`);
        const client = await registerMachineClient(database, { name, scope: scopesForLevel(level).join(' ') });
        await new AuditLog(database).record({ actor, action: 'client.create', target: `client:${client.clientId}`, after: { name, level } });
        print(client, () =>
          [
            `client_id:     ${client.clientId}`,
            `client_secret: ${client.clientSecret}`,
            '',
            'The secret is shown only now. Get a token with the client-credentials grant, e.g.:',
            `  curl -u '${client.clientId}:<secret>' -d grant_type=client_credentials -d 'scope=${client.scope}' <PUBLIC_URL>/idp/token`,
          ].join('\n'),
        );
        return 0;
      }
      case 'clients list': {
        const clients = await listMachineClients(database);
        print({ clients }, () => clients.map((c) => `${c.clientId.padEnd(32)} ${c.scope}`).join('\n') || 'No machine clients.');
        return 0;
      }
      case 'clients remove': {
        const id = arg(0, 'client-id');
        if (!(await removeMachineClient(database, id))) {
          io.err(json ? JSON.stringify({ error: 'not_found' }) : `error: there is no client "${id}"`);
          return 1;
        }
        await new AuditLog(database).record({ actor, action: 'client.remove', target: `client:${id}` });
        print({ removed: id }, () => `Removed ${id}; tokens it already holds expire on their own.`);
        return 0;
      }
      case 'sessions list': {
        const user = await admin.resolveUser(arg(0, 'email'));
        const rows = (
          await Promise.all(
            (await sessions.idsBySubject(user.sub)).map(async (id) => {
              const stored = await sessions.get(id);
              const authAt = (stored?.data as { authAt?: unknown } | undefined)?.authAt;
              return stored && { id, authAt: typeof authAt === 'number' ? authAt : null, expiresAt: stored.expiresAt };
            }),
          )
        ).filter((row) => row !== undefined);
        print({ user: user.email ?? user.sub, sessions: rows }, () =>
          rows.map((r) => `${r.id}  signed in ${r.authAt === null ? '?' : new Date(r.authAt).toISOString()}  ends ${new Date(r.expiresAt).toISOString()}`).join('\n') ||
          `${user.email ?? user.sub} has no active sessions.`,
        );
        return 0;
      }
      case 'sessions revoke': {
        const user = await admin.resolveUser(arg(0, 'email'));
        const only = values.session;
        if (only !== undefined) {
          const idpSid = idpSidOf((await sessions.get(only))?.data);
          await admin.revokeSession(actor, user.id, only);
          // One that predates provider-session tracking cannot name its own: all of them go.
          if (idpSid !== undefined) await providerSessions.endSession(user.sub, idpSid);
          else await providerSessions.endAccount(user.sub);
          print({ user: user.email ?? user.sub, revoked: 1, everyBrowser: idpSid === undefined }, () =>
            idpSid !== undefined ? `Revoked one session of ${user.email ?? user.sub}; it must sign in again.` : `Revoked one session of ${user.email ?? user.sub}; it predates provider-session tracking, so every browser of this user must sign in again.`,
          );
          return 0;
        }
        const ended = await admin.revokeSessions(actor, user.id);
        await providerSessions.endAccount(user.sub);
        print({ user: user.email ?? user.sub, revoked: ended }, () => `Revoked ${ended} session(s) of ${user.email ?? user.sub}; every browser must sign in again.`);
        return 0;
      }
      case 'whois': {
        if (!verb) throw new UsageError('missing <email>');
        const user = await admin.resolveUser(verb);
        const index = await AccessIndex.load(database);
        const grant = index.grantFor(user.id);
        const groupsWithPaths = index.explain(user.id);
        const granting = groupsWithPaths.find((g) => g.level !== null && g.level === grant.level);
        // One shortest path per group, but as a back-link (`through`: the group one step before it)
        // rather than the whole path: at the bottom of a 1,000-deep nesting the whole paths come to
        // half a million names. Following `through` back to `depth` 0 gives the path; `grantedBy`
        // is the one path that matters most, whole.
        const groups = groupsWithPaths.map((g) => ({ group: g.group, level: g.level, depth: g.path.length - 1, through: g.path.length > 1 ? (g.path.at(-2) as string) : null }));
        const data = { id: user.id, email: user.email, sub: user.sub, disabled: user.disabled, level: grant.level, grantedBy: granting?.path ?? null, groups };
        const readablePath = (path: string[]) => (path.length <= 5 ? path : [...path.slice(0, 2), `… ${path.length - 4} more …`, ...path.slice(-2)]).join(' ⊂ ');
        print(data, () =>
          [
            `${user.email ?? user.sub} (id ${user.id}${user.disabled ? ', disabled' : ''})`,
            `level: ${grant.level ?? 'none'}${granting ? `  (granted by ${granting.path.join(' ⊂ ')})` : ''}`,
            ...groupsWithPaths.map((g) => `  ${g.group.padEnd(24)} ${g.path.length === 1 ? 'direct' : `via ${readablePath(g.path)}`}`),
          ].join('\n'),
        );
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${positionals.join(' ')}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof AtriumError) {
      io.err(json ? JSON.stringify({ error: err.code, message: err.message, ...err.details }) : `error: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

const OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  query: { type: 'string' },
  name: { type: 'string' },
  level: { type: 'string' },
  description: { type: 'string' },
  'password-file': { type: 'string' },
  session: { type: 'string' },
  hours: { type: 'string' },
  off: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];
/** How the options are spelled on the command line (`--json`, `-h`, …). */
const OPTION_WORDS = new Set(Object.entries(OPTIONS).flatMap(([name, option]) => [`--${name}`, ...('short' in option ? [`-${option.short}`] : [])]));

/**
 * The word after `--session` is its value even when it starts with `-`: a session id is
 * base64url, so one in 64 does, and parseArgs would refuse it as a missing value ("argument is
 * ambiguous"). Unless that word is one of the options (`--session --json`: the id was forgotten),
 * which parseArgs still refuses, as it should.
 */
export function sessionValueJoined(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (word === '--') return [...out, ...argv.slice(i)];
    const value = argv[i + 1];
    if (word === '--session' && value !== undefined && !OPTION_WORDS.has(value.split('=')[0] as string)) {
      out.push(`--session=${value}`);
      i++;
    } else out.push(word);
  }
  return out;
}

export function parse(argv: string[]) {
  return parseArgs({ args: sessionValueJoined(argv), allowPositionals: true, strict: true, options: OPTIONS });
}
