import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent as HttpAgent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir, writeFiles } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { cookieHeader } from './helpers/sockets.ts';

let portal: TestPortal;
let appsDir: string;
let admin: Agent;

const versioned = (body: string) => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = ${JSON.stringify(body)}; });
export default app;
`;

beforeAll(async () => {
  appsDir = makeAppsDir({ 'stable/steady/index.js': koaAppSource('steady') });
  portal = await startTestPortal({ env: { APPS_DIR: appsDir } });
  admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
});
afterAll(async () => {
  await portal?.stopAll();
});

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return { value, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const body = async (path: string) => {
  const r = await admin.get(path, { Accept: 'application/json' });
  return { status: r.status, text: r.text };
};

/** Requests to one app, back to back on keep-alive connections, counting anything but a 200. */
function steadyTraffic(path: string, cookie: string) {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 4 });
  const url = new URL(portal.origin);
  let running = true;
  let ok = 0;
  const failures: string[] = [];
  const one = () =>
    new Promise<void>((resolve) => {
      const req = request({ host: url.hostname, port: url.port, path, agent, headers: { Cookie: cookie, Accept: 'application/json' } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          if (res.statusCode === 200 && text.includes('"steady"')) ok += 1;
          else failures.push(`${res.statusCode} ${text.slice(0, 80)}`);
          resolve();
        });
      });
      req.on('error', (err) => {
        failures.push(err.message);
        resolve();
      });
      req.end();
    });
  const loops = Array.from({ length: 4 }, async () => {
    while (running) await one();
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return { ok, failures };
    },
  };
}

describe('live discovery', () => {
  it('adds, changes, breaks, fixes and removes apps without a restart, while another app serves without a single failure', async () => {
    const traffic = steadyTraffic('/apps/stable/steady/', cookieHeader(admin));
    try {
      // Added: live without a restart.
      writeFiles(appsDir, { 'ea/fresh/index.js': versioned('v1') });
      await until(async () => ((await body('/apps/ea/fresh/')).text === 'v1' ? true : undefined));

      // Changed: the new version replaces the old.
      writeFiles(appsDir, { 'ea/fresh/index.js': versioned('v2') });
      await until(async () => ((await body('/apps/ea/fresh/')).text === 'v2' ? true : undefined));

      // Broken: the last good version keeps serving; the console and log say why.
      writeFiles(appsDir, { 'ea/fresh/index.js': 'export default {{{ not javascript' });
      const shown = await until(async () => {
        const page = await admin.get('/admin/apps');
        return page.text.includes('ea/fresh') && page.text.includes('last good version') ? page.text : undefined;
      });
      expect(shown.value).toContain('failed to load');
      expect((await body('/apps/ea/fresh/')).text).toBe('v2');

      // A broken manifest closes the app instead: it might have been narrowing who may open it.
      writeFiles(appsDir, { 'ea/fresh/index.js': versioned('v3'), 'ea/fresh/app.json': '{ "grups": [] }' });
      await until(async () => ((await admin.get('/admin/apps')).text.includes('grups') ? true : undefined));
      expect((await body('/apps/ea/fresh/')).status).toBe(404);
      expect((await admin.get('/admin/apps')).text).toContain('closed until app.json is fixed');

      // Fixed: the new version goes live and the error disappears.
      writeFiles(appsDir, { 'ea/fresh/app.json': JSON.stringify({ title: 'Fresh' }) });
      await until(async () => ((await body('/apps/ea/fresh/')).text === 'v3' ? true : undefined));
      await until(async () => {
        const page = (await admin.get('/admin/apps')).text;
        return !page.includes('last good version') && !page.includes('closed until') ? true : undefined;
      });

      // Removed: gone without a restart.
      rmSync(join(appsDir, 'ea/fresh'), { recursive: true, force: true });
      await until(async () => ((await body('/apps/ea/fresh/')).status === 404 ? true : undefined));

      // Several apps at once, then gone again.
      const many = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`devel/batch-${i}/index.js`, versioned(`batch ${i}`)]));
      writeFiles(appsDir, many);
      await until(async () => ((await body('/apps/devel/batch-9/')).text === 'batch 9' ? true : undefined));
      for (let i = 0; i < 10; i++) rmSync(join(appsDir, `devel/batch-${i}`), { recursive: true, force: true });
      await until(async () => ((await body('/apps/devel/batch-0/')).status === 404 ? true : undefined));
    } finally {
      const { ok, failures } = await traffic.stop();
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThan(50);
    }
  });

  it('finishes requests in flight on the version they started on', async () => {
    writeFiles(appsDir, {
      'stable/slow/index.js': `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use(async (ctx) => { await new Promise((r) => setTimeout(r, 1500)); ctx.body = 'old'; });
export default app;`,
    });
    await until(async () => ((await body('/apps/stable/slow/?probe')).text === 'old' ? true : undefined), 8_000);
    const inFlight = body('/apps/stable/slow/');
    await new Promise((r) => setTimeout(r, 100));
    writeFiles(appsDir, { 'stable/slow/index.js': versioned('new') });
    await until(async () => ((await body('/apps/stable/slow/')).text === 'new' ? true : undefined));
    expect(await inFlight).toEqual({ status: 200, text: 'old' });
  });

  it('shows apps that appear in the launcher', async () => {
    writeFiles(appsDir, { 'devel/late/index.js': versioned('late'), 'devel/late/app.json': JSON.stringify({ title: 'Late arrival' }) });
    await until(async () => ((await admin.get('/')).text.includes('Late arrival') ? true : undefined));
    writeFileSync(join(appsDir, 'devel/late/app.json'), JSON.stringify({ title: 'Renamed arrival' }));
    await until(async () => ((await admin.get('/')).text.includes('Renamed arrival') ? true : undefined));
  });
});
