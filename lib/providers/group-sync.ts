import type { AuditLog } from '../directory/audit.ts';
import { bumpRevision } from '../directory/revision.ts';
import type { Database } from '../db/schema.ts';
import type { Logger } from '../log.ts';

export interface SyncResult {
  added: string[];
  removed: string[];
  /** Plain (not namespaced) groups a rule names that do not exist: a sync never creates those. */
  missing: string[];
}

/** Names per query: well inside SQLite's and MySQL's limits on bound parameters. */
const BATCH = 500;

/**
 * Replaces a user's provider-managed memberships with what the provider's token says, at every
 * sign-in and refresh. They live in `provider_memberships`, apart from the memberships admins make
 * (`group_members`), which a sync therefore cannot touch. Namespaced groups (`idp:engineering`) are
 * created on first sight with no level, for admins to nest where they grant something; a plain
 * group a rule names must exist already. A change is audited, bumps the directory revision (every
 * instance rebuilds its access index) and is announced through `onChange`, which re-checks open
 * sockets: a group removed at the provider closes them at the refresh that brings the news.
 */
export class ProviderGroupSync {
  constructor(
    private readonly deps: {
      database: Database;
      audit: Pick<AuditLog, 'record'>;
      log: Logger;
      /** Rebuilds this instance's access index now (and so re-checks sockets). */
      onChange: () => Promise<void>;
    },
  ) {}

  private get db() {
    return this.deps.database.db;
  }

  async replace(input: { userId: number; who: string; provider: string; groups: readonly string[] }): Promise<SyncResult> {
    const { userId, provider } = input;
    const current = await this.db
      .selectFrom('provider_memberships as m')
      .innerJoin('groups as g', 'g.id', 'm.group_id')
      .select(['g.id', 'g.name'])
      .where('m.user_id', '=', userId)
      .where('m.provider', '=', provider)
      .execute();
    const wanted = await this.resolve(input.groups, provider);
    const currentIds = new Set(current.map((r) => Number(r.id)));
    const wantedIds = new Set(wanted.found.map((g) => g.id));
    const added = wanted.found.filter((g) => !currentIds.has(g.id));
    const removed = current.filter((r) => !wantedIds.has(Number(r.id))).map((r) => ({ id: Number(r.id), name: r.name }));
    if (wanted.missing.length > 0) this.deps.log.warn({ provider, missing: wanted.missing.slice(0, 20) }, 'group rules name groups that do not exist; create them or change the rules');
    if (added.length === 0 && removed.length === 0) return { added: [], removed: [], missing: wanted.missing };

    const now = Date.now();
    for (let i = 0; i < added.length; i += BATCH) {
      const rows = added.slice(i, i + BATCH).map((g) => ({ group_id: g.id, user_id: userId, provider, created_at: now }));
      const insert = this.db.insertInto('provider_memberships').values(rows);
      // A concurrent sign-in of the same user may have written the same row: that is the same answer.
      if (this.deps.database.dialect === 'mysql') await insert.ignore().execute();
      else await insert.onConflict((oc) => oc.doNothing()).execute();
    }
    for (let i = 0; i < removed.length; i += BATCH) {
      const ids = removed.slice(i, i + BATCH).map((g) => g.id);
      await this.db.deleteFrom('provider_memberships').where('user_id', '=', userId).where('provider', '=', provider).where('group_id', 'in', ids).execute();
    }
    const result = { added: added.map((g) => g.name), removed: removed.map((g) => g.name), missing: wanted.missing };
    await this.deps.audit.record({
      actor: `provider:${provider}`,
      action: 'member.provider_sync',
      target: `user:${input.who}`,
      before: { provider, groups: current.map((r) => r.name).sort() },
      after: { provider, groups: wanted.found.map((g) => g.name).sort(), added: result.added, removed: result.removed },
    });
    await bumpRevision(this.deps.database);
    await this.deps.onChange();
    return result;
  }

  /** Group ids for the names, creating the namespaced ones that do not exist yet. */
  private async resolve(names: readonly string[], provider: string): Promise<{ found: { id: number; name: string }[]; missing: string[] }> {
    const unique = [...new Set(names)];
    const found = await this.lookup(unique);
    const absent = unique.filter((n) => !found.has(n));
    const creatable = absent.filter((n) => n.includes(':'));
    if (creatable.length > 0) {
      const now = Date.now();
      for (let i = 0; i < creatable.length; i += BATCH) {
        const rows = creatable.slice(i, i + BATCH).map((name) => ({ name, level: null, description: `Managed by the identity provider "${provider}".`, builtin: 0, created_at: now }));
        const insert = this.db.insertInto('groups').values(rows);
        if (this.deps.database.dialect === 'mysql') await insert.ignore().execute();
        else await insert.onConflict((oc) => oc.column('name').doNothing()).execute();
      }
      for (const [name, id] of await this.lookup(creatable)) found.set(name, id);
      await this.deps.audit.record({ actor: `provider:${provider}`, action: 'group.create', target: `provider:${provider}`, after: { groups: creatable.slice(0, 100), count: creatable.length } });
    }
    return {
      found: unique.filter((n) => found.has(n)).map((name) => ({ id: found.get(name) as number, name })),
      missing: unique.filter((n) => !found.has(n)),
    };
  }

  private async lookup(names: string[]): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for (let i = 0; i < names.length; i += BATCH) {
      const batch = names.slice(i, i + BATCH);
      if (batch.length === 0) continue;
      const rows = await this.db.selectFrom('groups').select(['id', 'name']).where('name', 'in', batch).execute();
      for (const r of rows) found.set(r.name, Number(r.id));
    }
    return found;
  }
}
