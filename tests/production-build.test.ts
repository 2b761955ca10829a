import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../lib/free-port.ts';
import { Agent } from './helpers/agent.ts';

/**
 * The production build, as an operator runs it: `tsc -p tsconfig.build.json` and the asset copy
 * (what `npm run build` does, into a folder of the test's own), then plain `node` on the output
 * with NODE_ENV=production: no loader, and TypeScript apps still mount.
 */
const run = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const PASSWORD = 'correct horse battery staple';

let out: string;
let child: ChildProcess | undefined;
let stderr = '';
let stdout = '';
let origin: string;

beforeAll(async () => {
  // Inside the project, so the output resolves node_modules as dist/ would.
  out = mkdtempSync(join(ROOT, 'dist-test-'));
  await run('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', out], { cwd: ROOT });
  await run('npx', ['tsx', 'scripts/copy-build-assets.ts', out], { cwd: ROOT });
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  const env = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    // Plain http to the process itself, as behind a TLS proxy on the same host.
    PUBLIC_URL: origin,
    ALLOW_HTTP: '1',
    SESSION_SECRET: 'a'.repeat(64),
    DATA_DIR: mkdtempSync(join(tmpdir(), 'atrium-data-')),
    LOG_LEVEL: 'info',
  };
  // Production seeds no demo accounts: the first one comes from the built CLI, as an admin would make it.
  const passwordFile = join(env.DATA_DIR, 'first-password');
  writeFileSync(passwordFile, `${PASSWORD}\n`);
  await run(process.execPath, [join(out, 'scripts/atrium.js'), 'users', 'add', 'devel@example.com', '--name', 'Dev', '--password-file', passwordFile], { cwd: ROOT, env });
  await run(process.execPath, [join(out, 'scripts/atrium.js'), 'members', 'add', 'devel', 'devel@example.com'], { cwd: ROOT, env });
  child = spawn(process.execPath, [join(out, 'portal/main.js')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const deadline = Date.now() + 60_000;
  while (!stdout.includes('Atrium is listening')) {
    if (child.exitCode !== null) throw new Error(`the built portal exited with ${child.exitCode}: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`the built portal did not start: ${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 180_000);

afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  if (out) rmSync(out, { recursive: true, force: true });
});

describe('the production build', () => {
  it('runs as plain JavaScript: no loader in the process, no warning at start', async () => {
    const { stdout: args } = await run('ps', ['-o', 'args=', '-p', String(child!.pid)]);
    expect(args.trim()).toBe(`${process.execPath} ${join(out, 'portal/main.js')}`);
    expect(stderr).toBe('');
    expect(stdout).not.toMatch(/WARNING|Unsupported runtime/);
    expect((await fetch(`${origin}/healthz`)).status).toBe(200);
  });

  it('serves the portal’s pages and assets, signs in, and mounts TypeScript apps', async () => {
    const css = await fetch(`${origin}/assets/atrium.css`);
    expect(css.status).toBe(200);
    expect(await css.text()).toContain('{');
    const agent = new Agent(origin);
    await agent.login('devel@example.com', PASSWORD);
    // The inspector example is index.ts: compiled on its own import, the portal itself being JS.
    const inspector = await agent.get('/apps/devel/inspector/x', { Accept: 'application/json' });
    expect(inspector.status).toBe(200);
    expect(inspector.json()).toMatchObject({ path: '/x', user: { email: 'devel@example.com' } });
    expect((await agent.get('/')).text).toContain('Your apps');
  });

  it('stops on SIGTERM with exit status 0', async () => {
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
