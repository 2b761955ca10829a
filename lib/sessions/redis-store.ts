import type { Redis } from 'ioredis';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from './store.ts';

const PREFIX = 'atrium:';
const sessionKey = (id: string) => `${PREFIX}sess:${id}`;
const subjectKey = (subject: string) => `${PREFIX}sub:${subject}`;
const idpKey = (sid: string) => `${PREFIX}sid:${sid}`;

/**
 * Sessions in Redis, for several portal instances. Each session is one key that Redis expires by
 * itself; a set per user and per provider session indexes them (revocation, back-channel logout)
 * and is pruned of ids whose sessions have gone.
 */
/** A stored value that is well-formed and not past its expiry, else undefined. */
function live(raw: string | null): StoredSession | undefined {
  if (!raw) return undefined;
  try {
    const stored = JSON.parse(raw) as StoredSession;
    return stored.expiresAt > Date.now() ? stored : undefined;
  } catch {
    return undefined;
  }
}

export class RedisSessionStore implements SessionStore {
  constructor(private readonly redis: Redis) {}

  async get(id: string): Promise<StoredSession | undefined> {
    const raw = await this.redis.get(sessionKey(id));
    return live(raw);
  }

  async set(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<void> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    await this.redis.set(sessionKey(id), JSON.stringify({ data, expiresAt: Date.now() + ttlMs }), 'PX', ttl);
    await this.indexSession(id, ttl, index);
  }

  async update(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    // XX: only if the key still exists — an ended session stays ended.
    const done = await this.redis.set(sessionKey(id), JSON.stringify({ data, expiresAt: Date.now() + ttlMs }), 'PX', ttl, 'XX');
    if (done !== 'OK') return false;
    await this.indexSession(id, ttl, index);
    return true;
  }

  /** Index sets live as long as their longest session. */
  private async indexSession(id: string, ttl: number, index: SessionIndex): Promise<void> {
    const multi = this.redis.multi();
    if (index.subject) multi.sadd(subjectKey(index.subject), id).pexpire(subjectKey(index.subject), ttl, 'GT').pexpire(subjectKey(index.subject), ttl, 'NX');
    if (index.idpSid) multi.sadd(idpKey(index.idpSid), id).pexpire(idpKey(index.idpSid), ttl, 'GT').pexpire(idpKey(index.idpSid), ttl, 'NX');
    await multi.exec();
  }

  async destroy(id: string): Promise<void> {
    await this.redis.del(sessionKey(id));
  }

  async take(id: string): Promise<StoredSession | undefined> {
    // GETDEL is atomic: one caller gets the value, every other one nil.
    const raw = await this.redis.getdel(sessionKey(id));
    return live(raw);
  }

  private async liveMembers(setKey: string): Promise<string[]> {
    const ids = await this.redis.smembers(setKey);
    if (ids.length === 0) return [];
    const exists = await Promise.all(ids.map((id) => this.redis.exists(sessionKey(id))));
    const dead = ids.filter((_, i) => exists[i] === 0);
    if (dead.length > 0) await this.redis.srem(setKey, ...dead);
    return ids.filter((_, i) => exists[i] === 1);
  }

  idsBySubject(subject: string): Promise<string[]> {
    return this.liveMembers(subjectKey(subject));
  }

  idsByIdpSession(idpSid: string): Promise<string[]> {
    return this.liveMembers(idpKey(idpSid));
  }

  async destroyBySubject(subject: string): Promise<number> {
    const ids = await this.idsBySubject(subject);
    if (ids.length > 0) await this.redis.del(...ids.map(sessionKey));
    await this.redis.del(subjectKey(subject));
    return ids.length;
  }

  /** Redis expires sessions by itself. */
  async sweep(): Promise<number> {
    return 0;
  }
}
