import { describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { ConfigError } from '../lib/errors.ts';
import { configProblems } from './helpers/config-problems.ts';

const problems = configProblems;

describe('configuration', () => {
  it('starts in development with nothing set', () => {
    const config = loadConfig({});
    expect(config.env).toBe('development');
    expect(config.port).toBe(3000);
    expect(config.host).toBe('127.0.0.1');
    expect(config.publicUrl.href).toBe('http://localhost:3000/');
    expect(config.database).toEqual({ kind: 'sqlite', file: 'data/atrium.sqlite' });
    expect(config.oidc.issuer).toBeUndefined();
    expect(config.oidc.scope).toBe('openid profile email offline_access');
    expect(config.oidc.accessClaim).toBe('scope');
    expect(config.sessionKeys).toBeUndefined();
    expect(config.secureCookies).toBe(false);
  });

  it('derives PUBLIC_URL from PORT and marks cookies Secure for https', () => {
    expect(loadConfig({ PORT: '8080' }).publicUrl.href).toBe('http://localhost:8080/');
    expect(loadConfig({ PUBLIC_URL: 'https://atrium.example.com' }).secureCookies).toBe(true);
  });

  it('reads MySQL URLs and keeps the password out of error messages', () => {
    expect(loadConfig({ DATABASE_URL: 'mysql://u:p@db:3306/atrium' }).database).toMatchObject({ kind: 'mysql', database: 'atrium' });
    const found = problems({ DATABASE_URL: 'postgres://u:secret@db/atrium' });
    expect(found).toHaveLength(1);
    expect(found[0]).toContain('unsupported scheme');
    expect(found.join()).not.toContain('secret');
    expect(problems({ DATABASE_URL: 'mysql://u:p@db:3306/' })[0]).toContain('name the database');
    expect(problems({ DATABASE_URL: 'mysql://u:p@db:3306/x`;drop' })[0]).toContain('name the database');
  });

  it('reports every problem at once', () => {
    const found = problems({
      NODE_ENV: 'production',
      PORT: 'eighty',
      PUBLIC_URL: 'http://atrium.example.com/sub/path',
      SESSION_SECRET: 'short',
      OIDC_ISSUER: 'not a url',
      OIDC_SCOPE: 'profile email',
      LOG_LEVEL: 'loud',
      REDIS_URL: 'http://cache',
    });
    expect(found.length).toBeGreaterThanOrEqual(7);
    const text = found.join('\n');
    for (const name of ['PORT', 'PUBLIC_URL', 'SESSION_SECRET', 'OIDC_ISSUER', 'OIDC_SCOPE', 'LOG_LEVEL', 'REDIS_URL']) expect(text).toContain(name);
  });

  it('refuses unsafe production settings and says how to fix them', () => {
    const found = problems({ NODE_ENV: 'production', PUBLIC_URL: 'http://atrium.example.com' });
    expect(found.some((p) => p.startsWith('SESSION_SECRET') && p.includes('openssl rand'))).toBe(true);
    expect(found.some((p) => p.startsWith('PUBLIC_URL') && p.includes('https'))).toBe(true);
    const ok = loadConfig({
      NODE_ENV: 'production',
      PUBLIC_URL: 'https://atrium.example.com',
      SESSION_SECRET: 'a'.repeat(32) + ',' + 'b'.repeat(40),
    });
    expect(ok.sessionKeys).toEqual(['a'.repeat(32), 'b'.repeat(40)]);
    expect(ok.host).toBe('0.0.0.0');
    expect(loadConfig({ NODE_ENV: 'production', PUBLIC_URL: 'http://intranet:3000', ALLOW_HTTP: '1', SESSION_SECRET: 'c'.repeat(32) }).secureCookies).toBe(false);
  });

  it('needs a client id with an external issuer, and an issuer with client settings', () => {
    expect(problems({ OIDC_ISSUER: 'https://tenant.eu.auth0.com/' })[0]).toContain('OIDC_CLIENT_ID');
    expect(problems({ OIDC_CLIENT_ID: 'abc' })[0]).toContain('OIDC_ISSUER');
    const config = loadConfig({ OIDC_ISSUER: 'https://tenant.eu.auth0.com/', OIDC_CLIENT_ID: 'abc', OIDC_CLIENT_SECRET: 's', ACCESS_CLAIM: 'permissions', OIDC_AUDIENCE: 'https://api' });
    expect(config.oidc).toMatchObject({ clientId: 'abc', clientSecret: 's', accessClaim: 'permissions', audience: 'https://api' });
  });

  it('rejects nonsense numbers', () => {
    expect(problems({ PORT: '70000' })[0]).toContain('PORT');
    expect(problems({ PORT: '-1' })[0]).toContain('PORT');
    expect(problems({ SESSION_MAX_LIFETIME: '0' })[0]).toContain('SESSION_MAX_LIFETIME');
    expect(problems({ SESSION_IDLE_TIMEOUT: '1.5' })[0]).toContain('SESSION_IDLE_TIMEOUT');
    expect(problems({ SESSION_IDLE_TIMEOUT: '7200', SESSION_MAX_LIFETIME: '60' })[0]).toContain('longer than SESSION_MAX_LIFETIME');
    expect(problems({ IDP_ACCESS_TOKEN_TTL: 'soon' })[0]).toContain('IDP_ACCESS_TOKEN_TTL');
    expect(problems({ OIDC_LOGOUT_URL: 'javascript:alert(1)' })[0]).toContain('OIDC_LOGOUT_URL');
  });
});

describe('production start-up', () => {
  it('refuses to start while demo accounts still open with the demo password', async () => {
    const { startTestPortal } = await import('./helpers/portal.ts');
    const { createTestDatabase } = await import('./helpers/databases.ts');
    const database = await createTestDatabase('sqlite');
    // A development start seeds the demo accounts into this database…
    const dev = await startTestPortal({ database });
    await dev.stopAll();
    // …and a production start on the same database refuses, naming each one and the fix.
    const production = { NODE_ENV: 'production', SESSION_SECRET: 'p'.repeat(40), PUBLIC_URL: 'http://127.0.0.1:1', ALLOW_HTTP: '1' };
    const refused = await startTestPortal({ database, env: production }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).problems).toHaveLength(5);
    expect((refused as ConfigError).message).toContain('npm run atrium -- users disable admin@example.com');
  });
});
