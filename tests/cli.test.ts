import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runCli } from '../lib/cli.ts';
import { createTestDatabase, DIALECTS, useMigratedDatabase } from './helpers/databases.ts';

const run = promisify(execFile);

for (const dialect of DIALECTS) {
  describe(`admin CLI on ${dialect}`, () => {
    const db = useMigratedDatabase(dialect);

    async function cli(...argv: string[]) {
      let out = '';
      let err = '';
      const code = await runCli(argv, db.database, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) }, 'cli:test');
      return { code, out, err };
    }

    it('bootstraps a first admin from a password file and explains their level', async () => {
      const file = join(mkdtempSync(join(tmpdir(), 'atrium-pw-')), 'pw');
      writeFileSync(file, 'a long enough password\n');
      expect((await cli('users', 'add', 'boss@corp.example', '--name', 'Boss', '--password-file', file)).code).toBe(0);
      expect((await cli('members', 'add', 'admin', 'boss@corp.example')).code).toBe(0);
      const whois = await cli('whois', 'boss@corp.example', '--json');
      expect(whois.code).toBe(0);
      expect(JSON.parse(whois.out)).toMatchObject({ email: 'boss@corp.example', level: 'admin', grantedBy: ['admin'] });
      const text = await cli('whois', 'boss@corp.example');
      expect(text.out).toContain('stable                   via admin ⊂ devel ⊂ ea ⊂ stable');
    });

    it('creates, nests and un-nests groups; whois shows the inherited path', async () => {
      expect((await cli('groups', 'create', 'contractors')).code).toBe(0);
      expect((await cli('groups', 'create', 'partners', '--level', 'ea', '--description', 'External partners')).code).toBe(0);
      expect((await cli('groups', 'nest', 'contractors', 'partners')).code).toBe(0);
      expect((await cli('users', 'add', 'temp@corp.example')).code).toBe(0);
      expect((await cli('members', 'add', 'contractors', 'temp@corp.example')).code).toBe(0);
      const whois = JSON.parse((await cli('whois', 'temp@corp.example', '--json')).out);
      expect(whois).toMatchObject({ level: 'ea', grantedBy: ['contractors', 'partners'] });
      const groups = JSON.parse((await cli('groups', 'list', '--json')).out).groups;
      expect(groups.find((g: { name: string }) => g.name === 'contractors').parents).toEqual(['partners']);
      expect((await cli('groups', 'unnest', 'contractors', 'partners')).code).toBe(0);
      expect(JSON.parse((await cli('whois', 'temp@corp.example', '--json')).out).level).toBeNull();
      expect((await cli('members', 'remove', 'contractors', 'temp@corp.example')).code).toBe(0);
      expect((await cli('groups', 'delete', 'contractors')).code).toBe(0);
    });

    it('lists users as text and JSON', async () => {
      const json = JSON.parse((await cli('users', 'list', '--json')).out);
      expect(json.users.map((u: { email: string }) => u.email)).toEqual(expect.arrayContaining(['boss@corp.example', 'temp@corp.example']));
      expect((await cli('users', 'list', '--query', 'boss')).out).toContain('boss@corp.example');
    });

    it('disables and enables users, ending their sessions', async () => {
      await db.database.db.insertInto('sessions').values({ id: 's'.repeat(43), user_sub: (await db.database.db.selectFrom('users').select('sub').where('email', '=', 'temp@corp.example').executeTakeFirstOrThrow()).sub, data: '{}', expires_at: Date.now() + 60_000 }).execute();
      const out = await cli('users', 'disable', 'temp@corp.example', '--json');
      expect(JSON.parse(out.out)).toMatchObject({ disabled: true });
      expect(await db.database.db.selectFrom('sessions').select('id').where('id', '=', 's'.repeat(43)).executeTakeFirst()).toBeUndefined();
      expect((await cli('users', 'enable', 'temp@corp.example')).out).toContain('enabled');
    });

    it('refuses bad input with clear messages and exit codes', async () => {
      const cases: [string[], number, RegExp][] = [
        [[], 2, /Usage/],
        [['bogus'], 2, /unknown command "bogus"/],
        [['users', 'add'], 2, /missing <email>/],
        [['users', 'add', 'not-an-email'], 1, /not an email address/],
        [['users', 'add', 'boss@corp.example'], 1, /already exists/],
        [['users', 'add', 'x@corp.example', '--password-file', '/nonexistent/pw'], 1, /cannot read the password file \/nonexistent\/pw: no such file/],
        [['groups', 'create', 'Bad Name'], 1, /group name/],
        [['groups', 'create', 'x', '--level', 'root'], 2, /--level must be one of/],
        [['groups', 'create', 'partners'], 1, /already exists/],
        [['groups', 'nest', 'stable', 'admin'], 1, /cycle: stable ⊂ admin ⊂ devel ⊂ ea ⊂ stable/],
        [['groups', 'unnest', 'admin', 'devel'], 1, /built-in order/],
        [['groups', 'delete', 'admin'], 1, /cannot be deleted/],
        [['groups', 'nest', 'nope', 'ea'], 1, /no group named "nope"/],
        [['members', 'add', 'ea', 'ghost@corp.example'], 1, /no user "ghost@corp.example"/],
        [['members', 'remove', 'devel', 'boss@corp.example'], 1, /not a direct member/],
        [['whois'], 2, /missing <email>/],
        [['users', 'list', '--unknown-flag'], 2, /Unknown option/],
      ];
      for (const [argv, code, message] of cases) {
        // runCli answers every mistake with an exit code and a message; a throw is a crash, and fails here.
        const result = await cli(...argv);
        expect(result.code, argv.join(' ')).toBe(code);
        expect(result.err, argv.join(' ')).toMatch(message);
      }
      const json = await cli('groups', 'delete', 'admin', '--json');
      expect(JSON.parse(json.err)).toMatchObject({ error: 'builtin_group' });
    });

    it('audits every change with the CLI actor', async () => {
      const rows = await db.database.db.selectFrom('audit_log').select(['actor', 'action']).execute();
      expect(rows.every((r) => r.actor === 'cli:test')).toBe(true);
      expect(rows.map((r) => r.action)).toEqual(expect.arrayContaining(['user.create', 'member.add', 'group.create', 'group.nest', 'group.unnest', 'member.remove', 'group.delete', 'user.disable', 'user.enable']));
    });
  });
}

describe('the CLI as a process', () => {
  it('exits non-zero with the usage text on bad input, zero on success', async () => {
    const testDb = await createTestDatabase('sqlite');
    const env = { ...process.env, DATABASE_URL: testDb.url, NODE_ENV: 'test' };
    const bad = await run('npx', ['tsx', 'scripts/atrium.ts', 'frobnicate'], { env }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(2);
    expect((bad as { stderr: string }).stderr).toContain('Usage: npm run atrium');
    const ok = await run('npx', ['tsx', 'scripts/atrium.ts', 'groups', 'list', '--json'], { env });
    expect(JSON.parse(ok.stdout).groups.map((g: { name: string }) => g.name)).toEqual(['admin', 'devel', 'ea', 'stable']);
    const badConfig = await run('npx', ['tsx', 'scripts/atrium.ts', 'groups', 'list'], { env: { ...env, DATABASE_URL: 'postgres://x/y' } }).catch((e: { code: number; stderr: string }) => e);
    expect((badConfig as { code: number }).code).toBe(1);
    expect((badConfig as { stderr: string }).stderr).toContain('DATABASE_URL');
  }, 60_000);
});
