/**
 * The benchmark's child processes: spawning one pinned to a core, with a clean environment; waiting
 * until it answers; stopping it; reading CPU time and memory of it and its descendants from /proc.
 *
 * Every child is started as `setpriv --pdeathsig SIGTERM taskset -c <core> <command>` (both exec, so
 * the pid is the command's): pinned to its core, and sent SIGTERM by the kernel if the benchmark
 * process dies without cleaning up (kill -9, a crash), so nothing is left behind holding a port.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { HOST, ROOT } from './settings.ts';

export const READY_TIMEOUT_MS = 180_000;

/** Every child still running, so that a failure, a timeout or a signal can stop them all. */
export const children = new Set<ChildProcess>();

const SETPRIV = '/usr/bin/setpriv';
const TASKSET = '/usr/bin/taskset';
const hasSetpriv = existsSync(SETPRIV);

/** Refuses to run without taskset (util-linux): unpinned figures would not be what the table says. */
export function checkPinning(cores: number[]): void {
  if (!existsSync(TASKSET)) throw new Error(`${TASKSET} is missing: apt-get install -y util-linux`);
  for (const core of cores) {
    try {
      execFileSync(TASKSET, ['-c', String(core), 'true'], { stdio: 'ignore' });
    } catch {
      throw new Error(`cannot pin to core ${core} (taskset -c ${core} failed): set BENCH_SERVER_CORE / BENCH_LOAD_CORE to cores this machine has`);
    }
  }
}

/** Pins this process (all its threads) to a core: the orchestration stays off the servers' core. */
export function pinSelf(core: number): void {
  execFileSync(TASKSET, ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' });
}

/**
 * Environment for a child: ours, with every variable Atrium reads set to empty (so neither the
 * caller's shell nor a `.env` in the repository — the portal loads it for variables that are not
 * set — changes what is measured), plus `vars`.
 */
export function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const known = [
    'NODE_ENV', 'PORT', 'HOST', 'PUBLIC_URL', 'APPS_DIR', 'APP_ORIGIN', 'APPS_USER', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL', 'SESSION_SECRET',
    'SESSION_MAX_AGE', 'SESSION_IDLE_TIMEOUT', 'SESSION_MAX_LIFETIME', 'IDP_ACCESS_TOKEN_TTL', 'OIDC_LOGOUT_URL',
    'OIDC_ISSUER', 'OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_AUDIENCE', 'OIDC_SCOPE', 'ACCESS_CLAIM', 'ALLOW_HTTP',
    'LOG_LEVEL', 'IDP_HOOK_SECRET', 'KEEP_ALIVE_TIMEOUT', 'STOP_DRAIN_DELAY', 'STOP_TIMEOUT', 'UPSTREAM_TIMEOUT',
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

export interface Child {
  name: string;
  child: ChildProcess;
  pid: number;
  /** The last lines the process wrote (stdout and stderr), for error messages. */
  output: string[];
}

/** Starts `command args` pinned to `core`, in the repository, with `env`. */
export function spawnPinned(name: string, core: number, command: string, args: string[], env: NodeJS.ProcessEnv, stdin: 'ignore' | 'pipe' = 'ignore'): Child {
  const wrapped = [TASKSET, '-c', String(core), command, ...args];
  const [file, ...rest] = hasSetpriv ? [SETPRIV, '--pdeathsig', 'SIGTERM', ...wrapped] : wrapped;
  const child = spawn(file as string, rest, { cwd: ROOT, env, stdio: [stdin, 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  children.add(child);
  child.once('exit', () => children.delete(child));
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { name, child, pid: child.pid, output };
}

/** A Node server of the benchmark's, under tsx like the portal (tsx changes loading only, not requests). */
export function spawnNode(name: string, core: number, args: string[], env: NodeJS.ProcessEnv, stdin: 'ignore' | 'pipe' = 'ignore'): Child {
  return spawnPinned(name, core, process.execPath, ['--import', 'tsx', ...args], env, stdin);
}

export function exited(c: Child): boolean {
  return c.child.exitCode !== null || c.child.signalCode !== null;
}

/** Polls `url` until it answers 2xx; returns the ms since `since`. */
export async function waitReady(url: string, c: Child, since = Date.now(), headers: Record<string, string> = {}): Promise<number> {
  for (;;) {
    if (exited(c)) throw new Error(`${c.name} exited (${c.child.exitCode ?? c.child.signalCode}) before answering ${url}:\n${c.output.join('').slice(-4000)}`);
    try {
      const response = await fetch(url, { headers, signal: AbortSignal.timeout(2_000), redirect: 'manual' });
      await response.arrayBuffer();
      if (response.ok) return Date.now() - since;
    } catch {
      // not listening yet
    }
    if (Date.now() - since > READY_TIMEOUT_MS) throw new Error(`${url} did not answer within ${READY_TIMEOUT_MS / 1000} s:\n${c.output.join('').slice(-4000)}`);
    await sleep(50);
  }
}

/** SIGTERM (or `signal`), SIGKILL after 10 s; resolves once the process is gone. */
export async function stopChild(c: Child | ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const child = 'child' in c ? c.child : c;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

/** What to undo after the children are stopped when a signal cuts the run short (the temp folder). */
const onInterrupt: (() => void)[] = [];
export function cleanUpOnInterrupt(task: () => void): void {
  onInterrupt.push(task);
}

/** On SIGINT, SIGTERM or SIGHUP (the first one only), stops every child, cleans up and exits 130; on exit, SIGKILLs what is left. */
export function stopChildrenOnSignal(): void {
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      console.error(`\n${signal}: stopping the servers and load generators`);
      stopAll().finally(() => {
        for (const task of onInterrupt) {
          try {
            task();
          } catch {
            // best effort
          }
        }
        process.exit(130);
      });
    });
  }
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
  });
}

/** The process and all its descendants (nginx's workers), from /proc. */
export function processTree(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(Number(entry), Number(rest[1]));
    } catch {
      // gone meanwhile
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parentOf) if (parent === tree[i]) tree.push(child);
  }
  return tree;
}

export function rssMB(pids: number[]): number | null {
  let kb = 0;
  let any = false;
  for (const pid of pids) {
    try {
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) {
        kb += Number(match[1]);
        any = true;
      }
    } catch {
      // gone
    }
  }
  return any ? Math.round((kb / 1024) * 10) / 10 : null;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User and system CPU time of these processes so far, in ms (Linux /proc); null if none could be read. */
export function cpuTimes(pids: number[]): { user: number; system: number } | null {
  let user = 0;
  let system = 0;
  let any = false;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The command name may hold spaces: fields are counted after its closing parenthesis.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += (Number(rest[11]) * 1000) / CLOCK_TICKS;
      system += (Number(rest[12]) * 1000) / CLOCK_TICKS;
      any = true;
    } catch {
      // gone
    }
  }
  return any ? { user, system } : null;
}

/** User + system CPU time of these processes so far, in ms; null if none could be read. */
export function cpuMs(pids: number[]): number | null {
  const t = cpuTimes(pids);
  return t === null ? null : t.user + t.system;
}

/** Samples a short-lived process's CPU time every 100 ms; the last reading stands for its total. */
export function sampleCpu(pid: number): { stop(): { ms: number; wallMs: number } | null } {
  const started = performance.now();
  const first = cpuMs([pid]);
  let last: { ms: number; wallMs: number } | null = null;
  const read = () => {
    const now = cpuMs([pid]);
    if (now !== null && first !== null) last = { ms: now - first, wallMs: performance.now() - started };
  };
  const timer = setInterval(read, 100);
  return {
    stop() {
      clearInterval(timer);
      read();
      return last;
    },
  };
}

/** `count` TCP ports free on 127.0.0.1 right now, all different (held open together while the OS picks them). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, HOST, () => resolve());
      });
      const address = server.address();
      ports.push(typeof address === 'object' && address ? address.port : 0);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
