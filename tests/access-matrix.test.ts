import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, signInEveryDemoAccount } from './helpers/agent.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

let portal: TestPortal;
let agents = new Map<string, Agent>();

beforeAll(async () => {
  portal = await startTestPortal();
  agents = await signInEveryDemoAccount(portal.origin);
});
afterAll(async () => {
  await portal?.stopAll();
});

const APPS = { stable: '/apps/stable/welcome/', ea: '/apps/ea/notes/', devel: '/apps/devel/inspector/' } as const;
// Which tiers each demo account may open.
const MATRIX: Record<string, (keyof typeof APPS)[]> = {
  'admin@example.com': ['stable', 'ea', 'devel'],
  'devel@example.com': ['stable', 'ea', 'devel'],
  'ea@example.com': ['stable', 'ea'],
  'stable@example.com': ['stable'],
  'nobody@example.com': [],
};
const LEVEL: Record<string, string> = { 'admin@example.com': 'admin', 'devel@example.com': 'devel', 'ea@example.com': 'ea', 'stable@example.com': 'stable', 'nobody@example.com': 'none' };

describe('the access matrix: 5 accounts × 3 tiers', () => {
  for (const [email, allowed] of Object.entries(MATRIX)) {
    for (const [tier, path] of Object.entries(APPS) as [keyof typeof APPS, string][]) {
      const open = allowed.includes(tier);
      it(`${email} ${open ? 'opens' : 'is refused'} the ${tier} app`, async () => {
        const agent = agents.get(email)!;
        const page = await agent.get(path);
        if (open) {
          expect(page.status).toBe(200);
        } else {
          expect(page.status).toBe(403);
          expect(page.headers.get('content-type')).toContain('text/html');
          expect(page.text).toContain(`<span class="badge level-${tier}">${tier}</span>`);
          expect(page.text).toContain(`<span class="badge level-${LEVEL[email]}">${LEVEL[email]}</span>`);
          const api = await agent.get(path, { Accept: 'application/json' });
          expect(api.status).toBe(403);
          expect(api.json()).toMatchObject({ error: 'forbidden', needed: tier, level: LEVEL[email] === 'none' ? null : LEVEL[email] });
        }
      });
    }
  }

  it('the launcher marks each app open or locked for the viewer', async () => {
    const page = await agents.get('ea@example.com')!.get('/');
    expect(page.text).toContain('href="/apps/ea/notes/"');
    expect(page.text).toContain('href="/apps/stable/welcome/"');
    expect(page.text).not.toContain('href="/apps/devel/inspector/"');
    expect(page.text).toContain('needs devel');
    const empty = await agents.get('nobody@example.com')!.get('/');
    expect(empty.text).toContain('no access level yet');
    expect(empty.text).not.toContain('data-testid="app-link"');
  });

  it('child apps see the user and paths relative to their mount', async () => {
    const inspector = await agents.get('devel@example.com')!.get('/apps/devel/inspector/deep/path?q=1', { Accept: 'application/json' });
    expect(inspector.status).toBe(200);
    expect(inspector.json()).toMatchObject({
      path: '/deep/path',
      mountPath: '/apps/devel/inspector',
      query: { q: '1' },
      user: { email: 'devel@example.com', level: 'devel', groups: ['devel', 'ea', 'stable'] },
    });
  });

  it('redirects /apps/<tier>/<name> to the trailing-slash form, keeping the query', async () => {
    const r = await agents.get('devel@example.com')!.get('/apps/devel/inspector?a=1&b=2');
    expect(r.status).toBe(302);
    expect(r.location).toBe(`${portal.origin}/apps/devel/inspector/?a=1&b=2`);
    // …but only after the gate: a lower level learns nothing more than a 403.
    expect((await agents.get('ea@example.com')!.get('/apps/devel/inspector')).status).toBe(403);
  });
});

describe('signed out', () => {
  it.each(Object.values(APPS))('a browser asking for %s is sent to login with returnTo', async (path) => {
    const r = await new Agent(portal.origin).get(`${path}x?y=1`);
    expect(r.status).toBe(302);
    expect(r.location).toBe(`${portal.origin}/login?returnTo=${encodeURIComponent(`${path}x?y=1`)}`);
  });

  it('API calls get 401 JSON: non-GET, JSON Accept, or X-Requested-With', async () => {
    const agent = new Agent(portal.origin);
    for (const r of [
      await agent.request('POST', APPS.stable, { json: {} }),
      await agent.get(APPS.stable, { Accept: 'application/json' }),
      await agent.get(APPS.stable, { Accept: 'text/html', 'X-Requested-With': 'XMLHttpRequest' }),
    ]) {
      expect(r.status).toBe(401);
      expect(r.json()).toMatchObject({ error: 'unauthenticated' });
    }
  });

  it('does not reveal which apps exist', async () => {
    const agent = new Agent(portal.origin);
    expect((await agent.get('/apps/devel/does-not-exist/')).status).toBe(302);
    expect((await agent.get('/apps/devel/inspector/')).status).toBe(302);
  });

  it('forged or garbage session cookies are simply signed out', async () => {
    const owner = agents.get('admin@example.com')!;
    const sid = owner.cookie('atrium.sid')!;
    const forged = new Agent(portal.origin);
    forged.cookies.set('atrium.sid', { ...sid });
    forged.cookies.set('atrium.sid.sig', { ...sid, name: 'atrium.sid.sig', value: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    expect((await forged.get(APPS.devel, { Accept: 'application/json' })).status).toBe(401);
    const unsigned = new Agent(portal.origin);
    unsigned.cookies.set('atrium.sid', { ...sid });
    expect((await unsigned.get(APPS.devel, { Accept: 'application/json' })).status).toBe(401);
    for (const value of ['', 'x'.repeat(5000), '%00', '"><script>', '../../etc/passwd']) {
      const junk = new Agent(portal.origin);
      junk.cookies.set('atrium.sid', { ...sid, value });
      const r = await junk.get(APPS.stable, { Accept: 'application/json' });
      expect([400, 401, 431]).toContain(r.status);
    }
  });
});

/** A raw request, so the client does not normalise the path the way fetch/URL would. */
function raw(path: string, cookie: string, host = portal.origin.replace('http://', '')): Promise<{ status: number; body: string }> {
  const url = new URL(portal.origin);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method: 'GET', headers: { Cookie: cookie, Accept: 'application/json', Host: host } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('hostile paths never reach an app above the user’s level', () => {
  const HOSTILE = [
    '/apps/ea/notes/../../devel/inspector/',
    '/apps/ea/notes/%2e%2e/%2e%2e/devel/inspector/',
    '/apps/ea/notes/%2E%2E/%2E%2E/devel/inspector/',
    '/apps/ea/notes/.%2e/.%2e/devel/inspector/',
    '/apps/ea%2f..%2fdevel/inspector/',
    '/apps/ea/notes%2f..%2f..%2fdevel%2finspector/',
    '/apps/ea/notes%5c..%5c..%5cdevel%5cinspector/',
    '/apps/ea/notes\\..\\..\\devel\\inspector\\',
    '/apps//devel/inspector/',
    '/apps/devel//inspector/',
    '//apps/devel/inspector/',
    '/apps/devel/inspector%00/',
    '/apps/DEVEL/inspector/',
    '/apps/devel/INSPECTOR/',
    '/APPS/devel/inspector/',
    '/apps/devel./inspector/',
    '/apps/devel/inspector;x/',
    '/apps/%64evel/inspector/',
    '/apps/ea/notes/%252e%252e/%252e%252e/devel/inspector/',
    'http://127.0.0.1/apps/ea/notes/../../devel/inspector/',
  ];

  it.each(HOSTILE)('%s → 400 or 404 for an ea user, never the devel app', async (path) => {
    const cookie = [...agents.get('ea@example.com')!.cookies.values()].map((c) => `${c.name}=${c.value}`).join('; ');
    const r = await raw(path, cookie);
    expect([400, 404]).toContain(r.status);
    expect(r.body).not.toContain('"mountPath"');
  });

  it('the same tricks with the devel account still never 500', async () => {
    const cookie = [...agents.get('devel@example.com')!.cookies.values()].map((c) => `${c.name}=${c.value}`).join('; ');
    for (const path of HOSTILE) {
      const r = await raw(path, cookie);
      expect(r.status).toBeLessThan(500);
    }
  });

  it('percent-encoded names are not decoded into another app', async () => {
    // %64evel would decode to "devel": dispatch compares raw segments, so this is a 404, not the devel app.
    const cookie = [...agents.get('devel@example.com')!.cookies.values()].map((c) => `${c.name}=${c.value}`).join('; ');
    expect((await raw('/apps/%64evel/inspector/', cookie)).status).toBe(404);
  });
});

describe('operations endpoints', () => {
  it('/healthz, /readyz and /metrics answer', async () => {
    expect((await fetch(`${portal.origin}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${portal.origin}/readyz`)).json()).toMatchObject({ status: 'ready', checks: { database: 'ok', provider: 'ok' } });
    const metrics = await fetch(`${portal.origin}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toContain('atrium_http_requests_total{area="apps",status="2xx"}');
    expect(text).toContain('atrium_apps_mounted 4');
    expect(text).toContain('atrium_process_resident_memory_bytes');
    // Forwarded by a proxy on someone's behalf, it is not "local": only an admin may read it.
    expect((await fetch(`${portal.origin}/metrics`, { headers: { 'X-Forwarded-For': '10.1.2.3' } })).status).toBe(403);
    expect((await agents.get('ea@example.com')!.get('/metrics', { 'X-Forwarded-For': '10.1.2.3', Accept: 'application/json' })).status).toBe(403);
    expect((await agents.get('admin@example.com')!.get('/metrics', { 'X-Forwarded-For': '10.1.2.3' })).status).toBe(200);
  });
});
