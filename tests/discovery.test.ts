import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverApps } from '../lib/apps/discovery.ts';
import { parseManifest } from '../lib/apps/manifest.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/** Good apps beside every kind of broken folder. */
const BROKEN_BESIDE_GOOD = {
  'stable/good/index.js': koaAppSource('good'),
  'stable/good/app.json': JSON.stringify({ title: 'Good <b>app</b>', description: 'Works.' }),
  'ea/also-good/index.js': `import Koa from ${JSON.stringify(KOA)}; const app = new Koa(); app.use((ctx) => { ctx.body = 'also good'; });\nexport default { app, title: 'Also good' };`,
  'stable/Bad_Name/index.js': koaAppSource('bad-name'),
  'stable/throws/index.js': `throw new Error('boom at import');`,
  'stable/syntax/index.js': `export default {{{`,
  'stable/bad-json/index.js': koaAppSource('bad-json'),
  'stable/bad-json/app.json': '{ "title": ',
  'stable/typo/index.js': koaAppSource('typo'),
  'stable/typo/app.json': JSON.stringify({ title: 'Typo', grups: ['x'] }),
  'stable/bad-groups/index.js': koaAppSource('bad-groups'),
  'stable/bad-groups/app.json': JSON.stringify({ groups: 'admin' }),
  'stable/no-index/README.md': 'nothing to run',
  'stable/not-koa/index.js': `export default function handler() {}`,
  'stable/no-default/index.js': `export const app = 1;`,
  'stable/bad-realtime/index.js': `import Koa from ${JSON.stringify(KOA)}; export default { app: new Koa(), realtime: 'yes' };`,
  'stable/a-file.js': 'not a folder',
  'beta/elsewhere/index.js': koaAppSource('elsewhere'),
  'devel/-dash/index.js': koaAppSource('dash'),
};

describe('discovery', () => {
  it('loads the good apps and explains each skipped folder', async () => {
    const dir = makeAppsDir(BROKEN_BESIDE_GOOD);
    const { apps, failures } = await discoverApps(dir);
    expect(apps.map((a) => a.prefix).sort()).toEqual(['/apps/ea/also-good', '/apps/stable/good']);
    expect(apps.find((a) => a.name === 'good')).toMatchObject({ title: 'Good <b>app</b>', description: 'Works.', groups: [] });
    expect(apps.find((a) => a.name === 'also-good')?.title).toBe('Also good');
    const reasons = Object.fromEntries(failures.map((f) => [f.path, f.reason]));
    expect(reasons['stable/Bad_Name']).toMatch(/bad folder name/);
    expect(reasons['stable/throws']).toMatch(/failed to load: boom at import/);
    expect(reasons['stable/syntax']).toMatch(/failed to load/);
    expect(reasons['stable/bad-json']).toMatch(/not valid JSON/);
    expect(reasons['stable/typo']).toMatch(/grups/);
    expect(reasons['stable/bad-groups']).toMatch(/groups/);
    expect(reasons['stable/no-index']).toMatch(/no index\.ts or index\.js/);
    expect(reasons['stable/not-koa']).toMatch(/must be a Koa application/);
    expect(reasons['stable/no-default']).toMatch(/must be a Koa application/);
    expect(reasons['stable/bad-realtime']).toMatch(/realtime/);
    expect(reasons['stable/a-file.js']).toMatch(/not a folder/);
    expect(reasons.beta).toMatch(/not a tier/);
    expect(reasons['devel/-dash']).toMatch(/bad folder name/);
    for (const reason of Object.values(reasons)) expect(reason).not.toMatch(/\x1b\[/);
  });

  it('treats a missing APPS_DIR as no apps', async () => {
    expect(await discoverApps('/nonexistent/atrium/apps')).toEqual({ apps: [], failures: [] });
  });

  it('validates manifests strictly', () => {
    expect(parseManifest('{"title":"T","groups":["a.b","c_d"]}')).toEqual({ title: 'T', groups: ['a.b', 'c_d'] });
    for (const bad of ['[]', 'null', '"x"', '{"title":""}', '{"title":' + JSON.stringify('x'.repeat(81)) + '}', '{"groups":["Admin"]}', '{"upstream":"file:///etc/passwd"}', '{"command":"python3 app.py"}', '{"__proto__":{"x":1}}']) {
      expect(() => parseManifest(bad), bad).toThrow(/app\.json/);
    }
  });
});

describe('a portal with broken apps beside good ones', () => {
  let portal: TestPortal;
  beforeAll(async () => {
    portal = await startTestPortal({ env: { APPS_DIR: makeAppsDir(BROKEN_BESIDE_GOOD) } });
  });
  afterAll(async () => {
    await portal?.stopAll();
  });

  it('starts, serves the good apps and 404s the skipped ones', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('admin@example.com', DEMO_PASSWORD);
    const good = await agent.get('/apps/stable/good/x', { Accept: 'application/json' });
    expect(good.status).toBe(200);
    expect(good.json()).toEqual({ app: 'good', path: '/x', user: 'admin@example.com' });
    expect((await agent.get('/apps/ea/also-good/')).text).toBe('also good');
    for (const path of ['/apps/stable/throws/', '/apps/stable/Bad_Name/', '/apps/stable/typo/', '/apps/beta/elsewhere/']) {
      expect((await agent.get(path)).status).toBe(404);
    }
    // Titles are escaped on the launcher.
    const launcher = await agent.get('/');
    expect(launcher.text).toContain('Good &lt;b&gt;app&lt;/b&gt;');
    expect(launcher.text).not.toContain('Good <b>app</b>');
  });
});
