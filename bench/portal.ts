/**
 * The real portal as the benchmark runs it: `node --import tsx portal/main.ts` in a child process
 * pinned to the server core (SQLite in a temp folder, embedded provider, NODE_ENV=test,
 * LOG_LEVEL=silent), signed in once through the embedded provider the way a browser does, or given a
 * client-credentials token of a machine client registered with the admin CLI.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../lib/free-port.ts';
import { Agent } from '../tests/helpers/agent.ts';
import { HELLO_BODY, HELLO_PATH } from './fixtures.ts';
import { childEnv, spawnNode, spawnPinned, waitReady, type Child } from './processes.ts';
import { HOST, profile, RESULTS_DIR, ROOT, settings } from './settings.ts';

const DEMO_EMAIL = 'admin@example.com';
const DEMO_PASSWORD = 'atrium-demo';
const SESSION_COOKIES = ['atrium.sid', 'atrium.sid.sig'];

export interface PortalInstance {
  id: string;
  origin: string;
  env: NodeJS.ProcessEnv;
  dataDir: string;
}

/** A portal's settings: its own port, data folder and database, for this APPS_DIR. */
export async function portalInstance(id: string, appsDir: string, temp: string, port?: number): Promise<PortalInstance> {
  port ??= await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const dataDir = join(temp, `${id}-data`);
  mkdirSync(dataDir, { recursive: true });
  const env = childEnv({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    PORT: String(port),
    HOST,
    PUBLIC_URL: origin,
    APPS_DIR: appsDir,
    DATA_DIR: dataDir,
    DATABASE_URL: `sqlite:${join(dataDir, 'atrium.sqlite')}`,
    SESSION_SECRET: randomBytes(32).toString('hex'),
    // One token lifetime outlasts the whole run: no refresh in the middle of a measured round, and
    // the bearer token stays valid (a refresh is one request in ten minutes per session anyway).
    IDP_ACCESS_TOKEN_TTL: '7200',
  });
  return { id, origin, env, dataDir };
}

/**
 * Spawns the portal (with --cpu-prof under BENCH_PROFILE=1); does not wait. From the sources by
 * default (`node --import tsx portal/main.ts`, as `npm start`), or from a build's entry module with
 * plain node (as `npm run start:prod`, but with NODE_ENV=test like every portal here).
 */
export function spawnPortal(instance: PortalInstance, label = instance.id, nodeArgs: string[] = [], builtEntry?: string): Child {
  const profileArgs = profile ? ['--cpu-prof', `--cpu-prof-dir=${join(RESULTS_DIR, 'profiles', label)}`] : [];
  if (builtEntry) return spawnPinned(`portal ${label}`, settings.serverCore, process.execPath, [...profileArgs, ...nodeArgs, builtEntry], instance.env);
  return spawnNode(`portal ${label}`, settings.serverCore, [...profileArgs, ...nodeArgs, 'portal/main.ts'], instance.env);
}

export async function startPortal(instance: PortalInstance, builtEntry?: string): Promise<{ server: Child; startupMs: number }> {
  const started = Date.now();
  const server = spawnPortal(instance, instance.id, [], builtEntry);
  const startupMs = await waitReady(`${instance.origin}/healthz`, server, started);
  return { server, startupMs };
}

/** Signs in as the demo admin through the embedded provider (the real code flow); returns the Cookie header. */
export async function signIn(instance: PortalInstance): Promise<string> {
  const agent = new Agent(instance.origin);
  const landed = await agent.login(DEMO_EMAIL, DEMO_PASSWORD, HELLO_PATH);
  if (landed.status !== 200 || landed.text !== HELLO_BODY) {
    throw new Error(`${instance.id}: sign-in did not land on the hello app (${landed.status} ${landed.url}): ${landed.text.slice(0, 300)}`);
  }
  return SESSION_COOKIES.map((name) => {
    const c = agent.cookie(name);
    if (!c) throw new Error(`${instance.id}: no ${name} cookie after sign-in`);
    return `${c.name}=${c.value}`;
  }).join('; ');
}

/**
 * Registers a machine client with the admin CLI (`clients add`, in a child process, on the
 * portal's database before the portal starts, so the two never write at once).
 */
export async function registerMachineClient(instance: PortalInstance): Promise<{ clientId: string; clientSecret: string }> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/atrium.ts', 'clients', 'add', 'bench', '--level', 'stable', '--json'], {
    cwd: ROOT,
    env: instance.env,
    timeout: 120_000,
  });
  const { clientId, clientSecret } = JSON.parse(stdout) as { clientId?: string; clientSecret?: string };
  if (!clientId || !clientSecret) throw new Error(`clients add printed no client: ${stdout}`);
  return { clientId, clientSecret };
}

/** A client-credentials access token from the embedded provider's token endpoint. */
export async function machineToken(instance: PortalInstance, client: { clientId: string; clientSecret: string }): Promise<string> {
  const response = await fetch(`${instance.origin}/idp/token`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      Authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  const body = (await response.json()) as { access_token?: string };
  if (response.status !== 200 || !body.access_token) throw new Error(`${instance.id}: no client-credentials token (${response.status}): ${JSON.stringify(body)}`);
  return body.access_token;
}
