import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Development only: a session key generated once and kept in DATA_DIR, so restarts keep people
 * signed in without anyone having to invent a secret. Production refuses to start without
 * SESSION_SECRET (see lib/config.ts).
 */
export function developmentSessionKeys(dataDir: string): string[] {
  const file = join(dataDir, 'session-secret');
  try {
    const existing = readFileSync(file, 'utf8').trim();
    if (existing.length >= 32) return [existing];
  } catch {
    // first start: fall through and create it
  }
  mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(32).toString('hex');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return [key];
}
