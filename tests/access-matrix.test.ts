import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, signInEveryDemoAccount } from './helpers/agent.ts';
import { type HostAgentInMode, MODES, type ModePortal, startModePortal } from './helpers/modes.ts';
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
const APP_NAMES: Record<keyof typeof APPS, string> = { stable: 'welcome', ea: 'notes', devel: 'inspector' };
// Which tiers each demo account may open.
const MATRIX: Record<string, (keyof typeof APPS)[]> = {
  'admin@example.com': ['stable', 'ea', 'devel'],
  'devel@example.com': ['stable', 'ea', 'devel'],
  'ea@example.com': ['stable', 'ea'],
  'stable@example.com': ['stable'],
  'nobody@example.com': [],
};
const LEVEL: Record<string, string> = { 'admin@example.com': 'admin', 'devel@example.com': 'devel', 'ea@example.com': 'ea', 'stable@example.com': 'stable', 'nobody@example.com': 'none' };

describe.each(MODES)('the access matrix with %s: 5 accounts × 3 tiers', (mode) => {
  let setup: ModePortal;
  const browsers = new Map<string, HostAgentInMode>();
  beforeAll(async () => {
    setup = await startModePortal(mode);
    for (const email of Object.keys(MATRIX)) browsers.set(email, await setup.signedIn(email));
  });
  afterAll(async () => {
    await setup?.stopAll();
  });

  for (const [email, allowed] of Object.entries(MATRIX)) {
    for (const [tier, name] of Object.entries(APP_NAMES) as [keyof typeof APPS, string][]) {
      const open = allowed.includes(tier);
      it(`${email} ${open ? 'opens' : 'is refused'} the ${tier} app`, async () => {
        const browser = browsers.get(email)!;
        const page = await browser.visit(tier, name, '/');
        if (open) {
          expect(page.status).toBe(200);
          expect(page.url).toBe(setup.appUrl(tier, name, '/'));
          return;
        }
        expect(page.status).toBe(403);
        expect(String(page.headers['content-type'])).toContain('text/html');
        expect(page.text).toContain(`<span class="badge level-${tier}">${tier}</span>`);
        expect(page.text).toContain(`<span class="badge level-${LEVEL[email]}">${LEVEL[email]}</span>`);
        // Refused on an app origin: the hand-off gave that origin no session at all.
        expect(browser.appSession(tier, name) === undefined).toBe(mode === 'app origins');
        const api = await browser.call(tier, name, '/');
        if (mode === 'shared origin') {
          expect(api.status).toBe(403);
          expect(api.json()).toMatchObject({ error: 'forbidden', needed: tier, level: LEVEL[email] === 'none' ? null : LEVEL[email] });
        } else {
          expect(api.status).toBe(401);
          expect(api.json()).toMatchObject({ error: 'unauthenticated' });
        }
      });
    }
  }

  it('the launcher marks each app open or locked for the viewer', async () => {
    const href = (tier: string, name: string) => (mode === 'shared origin' ? `href="/apps/${tier}/${name}/"` : `href="${setup.appUrl(tier, name, '/')}"`);
    const page = await browsers.get('ea@example.com')!.get(`${setup.origin}/`);
    expect(page.text).toContain(href('ea', 'notes'));
    expect(page.text).toContain(href('stable', 'welcome'));
    expect(page.text).not.toContain(href('devel', 'inspector'));
    expect(page.text).toContain('needs devel');
    const empty = await browsers.get('nobody@example.com')!.get(`${setup.origin}/`);
    expect(empty.text).toContain('no access level yet');
    expect(empty.text).not.toContain('data-testid="app-link"');
  });

  it('child apps see the user and paths relative to their mount', async () => {
    const inspector = await browsers.get('devel@example.com')!.call('devel', 'inspector', '/deep/path?q=1');
    expect(inspector.status).toBe(200);
    expect(inspector.json()).toMatchObject({
      path: '/deep/path',
      query: { q: '1' },
      user: { email: 'devel@example.com', level: 'devel', groups: ['devel', 'ea', 'stable'] },
    });
    // On its own origin an app is mounted at the root.
    expect(inspector.json().mountPath).toBe(mode === 'shared origin' ? '/apps/devel/inspector' : undefined);
  });

  it('a signed-out browser asking for an app page is sent to sign in, keeping where it was going', async () => {
    for (const [tier, name] of Object.entries(APP_NAMES)) {
      const r = await setup.browser().get(setup.appUrl(tier, name, '/x?y=1'));
      expect(r.status).toBe(302);
      const next = new URL(r.location!);
      expect(next.origin).toBe(setup.origin);
      if (mode === 'shared origin') expect(next.pathname + next.search).toBe(`/login?returnTo=${encodeURIComponent(`/apps/${tier}/${name}/x?y=1`)}`);
      else {
        expect(next.pathname).toBe('/auth/handoff');
        expect(next.searchParams.get('app')).toBe(`${tier}/${name}`);
        expect(next.searchParams.get('returnTo')).toBe('/x?y=1');
      }
    }
  });

  it('signed-out API calls get 401 JSON: non-GET, JSON Accept, or X-Requested-With', async () => {
    const browser = setup.browser();
    const url = setup.appUrl('stable', 'welcome', '/');
    for (const r of [
      await browser.request('POST', url, { headers: { 'Content-Type': 'application/json', Accept: 'text/html' } }),
      await browser.get(url, { Accept: 'application/json' }),
      await browser.get(url, { Accept: 'text/html', 'X-Requested-With': 'XMLHttpRequest' }),
    ]) {
      expect(r.status).toBe(401);
      expect(r.json()).toMatchObject({ error: 'unauthenticated' });
    }
  });

  it('a signed-out browser cannot tell which apps exist', async () => {
    const unknown = await setup.browser().get(setup.appUrl('devel', 'does-not-exist', '/'));
    const known = await setup.browser().get(setup.appUrl('devel', 'inspector', '/'));
    expect(unknown.status).toBe(302);
    expect(known.status).toBe(302);
    expect(new URL(unknown.location!).pathname).toBe(new URL(known.location!).pathname);
  });

  it('forged or garbage session cookies on app pages are simply signed out', async () => {
    const owner = browsers.get('admin@example.com')!;
    await owner.visit('devel', 'inspector', '/');
    const value = owner.appSession('devel', 'inspector')!;
    expect(value).toBeTruthy();
    const name = setup.appSessionCookie;
    const asApi = { Accept: 'application/json' };
    const attempt = (cookie: string) =>
      setup.browser().request('GET', setup.appUrl('devel', 'inspector', '/'), { headers: { ...asApi, Cookie: cookie }, cookies: false });
    expect((await attempt(`${name}=${value}; ${name}.sig=AAAAAAAAAAAAAAAAAAAAAAAAAAA`)).status).toBe(401);
    expect((await attempt(`${name}=${value}`)).status).toBe(401);
    for (const junk of ['', 'x'.repeat(5000), '%00', '"><script>', '../../etc/passwd']) {
      expect([400, 401, 431]).toContain((await attempt(`${name}=${junk}`)).status);
    }
    // The real cookie pair still opens it: the refusals above were the forgeries'.
    expect((await attempt(owner.cookieFor('devel', 'inspector'))).status).toBe(200);
  });
});

describe('the path form on the portal’s own origin', () => {
  it('redirects /apps/<tier>/<name> to the trailing-slash form, keeping the query', async () => {
    const r = await agents.get('devel@example.com')!.get('/apps/devel/inspector?a=1&b=2');
    expect(r.status).toBe(302);
    expect(r.location).toBe(`${portal.origin}/apps/devel/inspector/?a=1&b=2`);
    // …but only after the gate: a lower level learns nothing more than a 403.
    expect((await agents.get('ea@example.com')!.get('/apps/devel/inspector')).status).toBe(403);
  });
});

/** A raw request, so the client does not normalise the path (or Host) the way fetch/URL would. */
function raw(path: string, cookie: string): Promise<{ status: number; body: string }> {
  return rawTo(Number(new URL(portal.origin).port), path, cookie, new URL(portal.origin).host);
}

function rawTo(port: number, path: string, cookie: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers: { Cookie: cookie, Accept: 'application/json', Host: host } }, (res) => {
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

describe('hostile Host headers never reach an app above the user’s level', () => {
  let setup: ModePortal;
  let ea: HostAgentInMode;
  beforeAll(async () => {
    setup = await startModePortal('app origins');
    ea = await setup.signedIn('ea@example.com');
    expect((await ea.visit('ea', 'notes', '/')).status).toBe(200);
  });
  afterAll(async () => {
    await setup?.stopAll();
  });

  it('an ea user’s app session, sent with any spelling of the devel app’s host, opens nothing there', async () => {
    const p = setup.port;
    const hosts = [
      `devel-inspector.apps.localhost:${p}`,
      `DEVEL-INSPECTOR.apps.localhost:${p}`,
      `devel-inspector.apps.localhost.:${p}`,
      `devel-inspector.APPS.localhost:${p}`,
      `ea-notes.apps.localhost:${p}@devel-inspector.apps.localhost:${p}`,
      `devel-inspector.apps.localhost:${p}, ea-notes.apps.localhost:${p}`,
      `ea-notes.devel-inspector.apps.localhost:${p}`,
      `devel-inspector.ea-notes.apps.localhost:${p}`,
      `ea-notes%2e.apps.localhost:${p}`,
      `ea-notes.apps.localhost:${p}/../devel-inspector`,
      `[::1]:${p}`,
    ];
    const cookie = ea.cookieFor('ea', 'notes');
    for (const host of hosts) {
      const r = await rawTo(setup.port, '/', cookie, host);
      expect(r.status, host).toBeLessThan(500);
      expect(r.status === 200 && r.body.includes('"inspector"'), host).toBe(false);
      expect(r.body, host).not.toContain('"mountPath"');
    }
  });
});

describe('operations endpoints', () => {
  it('/healthz, /readyz and /metrics answer', async () => {
    expect((await agents.get('ea@example.com')!.get(APPS.ea)).status).toBe(200);
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
