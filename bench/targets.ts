/**
 * The benchmark's targets: starting each server in its own child process (the portal signed in
 * once), and checking by hand that it answers the hello body before any load.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../lib/free-port.ts';
import { Agent } from '../tests/helpers/agent.ts';
import { HELLO_BODY, type AppsFixture } from './fixtures.ts';
import { childEnv, spawnServer, waitReady } from './processes.ts';
import { HOST, LABELS, profile, RESULTS_DIR, type Target } from './settings.ts';

const DEMO_EMAIL = 'admin@example.com';
const DEMO_PASSWORD = 'atrium-demo';
const SESSION_COOKIES = ['atrium.sid', 'atrium.sid.sig'];

export async function startPortal(id: 'portal10' | 'portal1000', fixture: AppsFixture, temp: string): Promise<Target> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const dataDir = join(temp, `${id}-data`);
  mkdirSync(dataDir, { recursive: true });
  const profileArgs = profile ? ['--cpu-prof', `--cpu-prof-dir=${join(RESULTS_DIR, 'profiles', id)}`] : [];
  const { child, output } = spawnServer(
    [...profileArgs, 'portal/main.ts'],
    childEnv({
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      PORT: String(port),
      HOST,
      PUBLIC_URL: origin,
      APPS_DIR: fixture.dir,
      DATA_DIR: dataDir,
      DATABASE_URL: `sqlite:${join(dataDir, 'atrium.sqlite')}`,
      SESSION_SECRET: randomBytes(32).toString('hex'),
    }),
  );
  const startupMs = await waitReady(`${origin}/healthz`, child, output);

  // Sign in once through the embedded provider, exactly as a browser does; replay the session cookie.
  const agent = new Agent(origin);
  const landed = await agent.login(DEMO_EMAIL, DEMO_PASSWORD, fixture.helloPath);
  if (landed.status !== 200 || landed.text !== HELLO_BODY) {
    throw new Error(`${id}: sign-in did not land on the hello app (${landed.status} ${landed.url}): ${landed.text.slice(0, 300)}`);
  }
  const cookie = SESSION_COOKIES.map((name) => {
    const c = agent.cookie(name);
    if (!c) throw new Error(`${id}: no ${name} cookie after sign-in`);
    return `${c.name}=${c.value}`;
  }).join('; ');
  return {
    id,
    label: LABELS[id],
    url: `${origin}${fixture.helloPath}`,
    headers: { cookie, accept: '*/*' },
    child,
    output,
    startupMs,
    apps: fixture.count,
    rssIdleMB: null,
    rssAfterLoadMB: null,
    runs: [],
  };
}

export async function startBare(fixture: AppsFixture, cookie: string): Promise<Target> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const { child, output } = spawnServer(['bench/servers/app.ts'], childEnv({ PORT: String(port), BENCH_APP_MODULE: fixture.helloModule, NODE_ENV: 'test' }));
  const startupMs = await waitReady(`${origin}/`, child, output);
  // The same Cookie header as the portal gets, so both parse the same bytes; bare Koa ignores it.
  return { id: 'bare', label: LABELS.bare, url: `${origin}/`, headers: { cookie, accept: '*/*' }, child, output, startupMs, rssIdleMB: null, rssAfterLoadMB: null, runs: [] };
}

export async function startSession(fixture: AppsFixture): Promise<Target> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const { child, output } = spawnServer(['bench/servers/koa-session.ts'], childEnv({ PORT: String(port), BENCH_APP_MODULE: fixture.helloModule, NODE_ENV: 'test' }));
  const startupMs = await waitReady(`${origin}/`, child, output);
  const login = await fetch(`${origin}/__bench/login`);
  await login.arrayBuffer();
  const cookie = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  if (!cookie.includes('bench.sess.sig=')) throw new Error(`session: no signed session cookie from /__bench/login (${cookie})`);
  return { id: 'session', label: LABELS.session, url: `${origin}/`, headers: { cookie, accept: '*/*' }, child, output, startupMs, rssIdleMB: null, rssAfterLoadMB: null, runs: [] };
}

/** One request by hand before any load: the answer must be the hello body, with no cookie written. */
export async function verify(target: Target): Promise<void> {
  const response = await fetch(target.url, { headers: target.headers, redirect: 'manual' });
  const body = await response.text();
  if (response.status !== 200 || body !== HELLO_BODY) {
    throw new Error(`${target.id}: expected 200 "${HELLO_BODY.trim()}" from ${target.url}, got ${response.status}: ${body.slice(0, 300)}`);
  }
  const setCookie = response.headers.getSetCookie();
  if (setCookie.length > 0) console.warn(`note: ${target.id} writes a cookie on every request: ${setCookie.join(' | ')}`);
}
