import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Database } from '../../lib/db/schema.ts';
import { initSetting } from '../../lib/db/settings.ts';

/**
 * The embedded provider's signing keys: generated on first start, kept in the database so every
 * instance and every restart signs with the same key and tokens already issued stay valid.
 */
export async function loadSigningKeys(database: Database): Promise<{ keys: JWK[] }> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const candidate = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  const stored = await initSetting(database, 'idp_jwks', JSON.stringify({ keys: [candidate] }));
  return JSON.parse(stored) as { keys: JWK[] };
}
