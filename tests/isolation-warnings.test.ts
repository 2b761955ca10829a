import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../lib/free-port.ts';
import { Agent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/** Production that runs apps without isolation starts, but says so where an operator looks. */

const PRODUCTION = { NODE_ENV: 'production', SESSION_SECRET: 's'.repeat(40), ALLOW_HTTP: '1' };
const PASSWORD = 'a long admin password 1';
let portal: TestPortal | undefined;
afterEach(async () => {
  await portal?.stopAll();
  portal = undefined;
});

async function adminAgent(p: TestPortal): Promise<Agent> {
  await p.portal.admin.addLocalUser('test', { email: 'root@example.com', password: PASSWORD });
  await p.portal.admin.addMember('test', 'admin', 'root@example.com');
  const agent = new Agent(p.origin);
  await agent.login('root@example.com', PASSWORD);
  return agent;
}

describe('isolation warnings', () => {
  it('production on a shared origin without APPS_USER: /readyz details and an admin banner name the settings', async () => {
    portal = await startTestPortal({ env: { ...PRODUCTION, APPS_DIR: makeAppsDir({ 'ea/notes/index.js': koaAppSource('notes') }) } });
    const ready = await fetch(`${portal.origin}/readyz`).then((r) => r.json() as Promise<any>);
    expect(ready.isolation.appOrigins).toBe(false);
    expect(ready.isolation.commandApps.isolated).toBe(false);
    expect(ready.isolation.warnings.join(' ')).toContain('APP_ORIGIN');
    expect(ready.isolation.warnings.join(' ')).toContain('APPS_USER');
    const agent = await adminAgent(portal);
    const page = await agent.get('/admin/users');
    expect(page.status).toBe(200);
    expect(page.text).toContain('data-testid="security-warning"');
    expect(page.text).toContain('APP_ORIGIN');
  });

  it('production with app origins and APPS_USER: no warning', async () => {
    const port = await freePort();
    portal = await startTestPortal({
      port,
      env: { ...PRODUCTION, APP_ORIGIN: `http://{tier}-{name}.apps.localhost:${port}`, APPS_USER: 'atrium-apps', APPS_DIR: makeAppsDir({ 'ea/notes/index.js': koaAppSource('notes') }) },
    });
    const ready = await fetch(`${portal.origin}/readyz`).then((r) => r.json() as Promise<any>);
    expect(ready.isolation).toMatchObject({ appOrigins: true, commandApps: { isolated: true }, warnings: [] });
    const page = await (await adminAgent(portal)).get('/admin/users');
    expect(page.status).toBe(200);
    expect(page.text).not.toContain('data-testid="security-warning"');
  });

  it('development does not warn', async () => {
    portal = await startTestPortal({ env: { APPS_DIR: makeAppsDir({ 'ea/notes/index.js': koaAppSource('notes') }) } });
    const ready = await fetch(`${portal.origin}/readyz`).then((r) => r.json() as Promise<any>);
    expect(ready.isolation.warnings).toEqual([]);
  });
});
