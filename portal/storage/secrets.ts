import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePrivateDir } from '../../lib/private-files.ts';

/**
 * Development only: a session key generated once and kept in DATA_DIR, so restarts keep people
 * signed in without anyone having to invent a secret. Production refuses to start without
 * SESSION_SECRET (see lib/config.ts). The folder is 0700 and the file 0600 (tightened if an older
 * run left them wider): app processes run as another user must not read the key.
 */
export function developmentSessionKeys(dataDir: string): string[] {
  makePrivateDir(dataDir, 'DATA_DIR');
  const file = join(dataDir, 'session-secret');
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return [existing];
  } catch {
    // first start: fall through and create it
  }
  const key = randomBytes(32).toString('hex');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return [key];
}
