import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { AtriumUser } from '../lib/app-kit.ts';
import { upstreamIdentity } from '../portal/apps/identity-headers.ts';

/**
 * The bundled Python example (apps/ea/hello-python/app.py) reads the identity as the README says:
 * X-Atrium-User and -Email exactly as sent unless X-Atrium-Encoded names them, the name always
 * percent-encoded. Its `identity()` is run on headers the portal itself would send.
 */

const APP_DIR = fileURLToPath(new URL('../apps/ea/hello-python', import.meta.url));

/** `identity(headers)` of app.py for each set of headers, in one Python run (-B: no __pycache__ left in the app's folder). */
function pythonIdentities(sets: Record<string, string>[]): Record<string, unknown>[] {
  const script = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(APP_DIR)})`,
    'from email.message import Message',
    'from app import identity',
    'def message(pairs):',
    '    headers = Message()',
    '    for name, value in pairs.items():',
    '        headers[name] = value',
    '    return headers',
    'print(json.dumps([identity(message(pairs)) for pairs in json.load(sys.stdin)]))',
  ].join('\n');
  const run = spawnSync('python3', ['-B', '-c', script], { input: JSON.stringify(sets), encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`python3 failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, unknown>[];
}

const user = (changes: Partial<AtriumUser>): AtriumUser => ({ sub: 'auth0|abc', email: 'ada@example.com', name: 'Ada', picture: null, level: 'ea', groups: ['ea', 'stable'], profile: {}, ...changes });

describe('the Python example app', () => {
  it('reads every identity the portal sends as it is: decoding only what X-Atrium-Encoded names', () => {
    const cases: Partial<AtriumUser>[] = [
      {},
      { email: 'alice%40corp.example@evil.example' },
      { sub: 'auth0|100%', email: 'a%40b@example.com' },
      { sub: 'with space', email: 'jörg@exämple.com', name: 'Zoë Ünïcode' },
      { name: '100% Ada, "the" first' },
    ];
    const users = cases.map(user);
    const read = pythonIdentities(users.map((who) => upstreamIdentity(who, []).headers as Record<string, string>));
    users.forEach((who, i) => expect(read[i], JSON.stringify(cases[i])).toMatchObject({ sub: who.sub, email: who.email, name: who.name, level: 'ea', groups: ['ea', 'stable'] }));
  });

  it('leaves a value X-Atrium-Encoded does not name exactly as sent, percent signs and all', () => {
    const [plain, named] = pythonIdentities([
      { 'X-Atrium-User': 'auth0|a%40b', 'X-Atrium-Email': 'a%40b@example.com', 'X-Atrium-Name': 'Ada' },
      { 'X-Atrium-User': 'auth0|a%40b', 'X-Atrium-Email': 'a%40b%40example.com', 'X-Atrium-Encoded': 'email' },
    ]);
    expect(plain).toMatchObject({ sub: 'auth0|a%40b', email: 'a%40b@example.com' });
    // Named, it is decoded (and only the one named).
    expect(named).toMatchObject({ sub: 'auth0|a%40b', email: 'a@b@example.com' });
  });
});
