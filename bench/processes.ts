/**
 * The benchmark's child processes: spawning a server with a clean environment, waiting until it
 * answers, stopping it, and reading its memory and CPU time from /proc.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './settings.ts';

export const READY_TIMEOUT_MS = 180_000;

/** Every server still running, so that a timeout or a signal can stop them all. */
export const children = new Set<ChildProcess>();

/**
 * Environment for a child: ours, with every variable Atrium reads set to empty (so neither the
 * caller's shell nor a `.env` in the repository — the portal loads it for variables that are not
 * set — changes what is measured), plus `vars`.
 */
export function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const known = [
    'NODE_ENV', 'PORT', 'HOST', 'PUBLIC_URL', 'APPS_DIR', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL', 'SESSION_SECRET',
    'SESSION_MAX_AGE', 'SESSION_IDLE_TIMEOUT', 'SESSION_MAX_LIFETIME', 'IDP_ACCESS_TOKEN_TTL', 'OIDC_LOGOUT_URL',
    'OIDC_ISSUER', 'OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_AUDIENCE', 'OIDC_SCOPE', 'ACCESS_CLAIM', 'ALLOW_HTTP',
    'LOG_LEVEL', 'IDP_HOOK_SECRET',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of [...known, ...dotenvNames('.env'), ...dotenvNames('.env.example')]) env[name] = '';
  delete env.NODE_OPTIONS;
  return { ...env, ...vars };
}

/** The variable names a dotenv file in the repository sets (none if it does not exist). */
function dotenvNames(file: string): string[] {
  try {
    return [...readFileSync(join(ROOT, file), 'utf8').matchAll(/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/gm)].map((m) => m[1] as string);
  } catch {
    return [];
  }
}

export function spawnServer(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; output: string[] } {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output };
}

export async function waitReady(url: string, child: ChildProcess, output: string[]): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before answering ${url}:\n${output.join('').slice(-4000)}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok) return Date.now() - started;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > READY_TIMEOUT_MS) throw new Error(`${url} did not answer within ${READY_TIMEOUT_MS / 1000} s:\n${output.join('').slice(-4000)}`);
    await sleep(100);
  }
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** On SIGINT or SIGTERM (the first one only), stops every child and exits 130. */
export function stopChildrenOnSignal(): void {
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      if (interrupted) return;
      interrupted = true;
      console.error(`\n${signal}: stopping the servers`);
      Promise.all([...children].map((c) => stopChild(c))).finally(() => process.exit(130));
    });
  }
}

export function rssMB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round((Number(match[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User and system CPU time of a process so far, in ms (Linux /proc); null elsewhere. */
export function cpuMs(pid: number | undefined): { user: number; system: number } | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: (Number(rest[11]) * 1000) / CLOCK_TICKS, system: (Number(rest[12]) * 1000) / CLOCK_TICKS };
  } catch {
    return null;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
