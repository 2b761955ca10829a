/**
 * The load generators, each in its own process pinned to the load core: Debian's wrk for HTTP
 * (one thread, `--latency`, bench/wrk/check.lua checking every answer), and bench/clients/
 * socket-load.ts for socket.io and websockets. `window` is called when the measured time begins
 * and ends, so the servers' CPU time is read over the same span.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { childEnv, exited, sampleCpu, spawnNode, spawnPinned, stopChild, type Child } from './processes.ts';
import { ROOT, settings, WRK } from './settings.ts';

export interface Window {
  begin(): void;
  end(): void;
}

export interface GeneratorResult {
  ops: number;
  bad: number;
  errors: number;
  firstProblem?: string | undefined;
  wallMs: number;
  p50Ms: number;
  p99Ms: number;
  generatorPercent: number | null;
}

const LUA = join(ROOT, 'bench', 'wrk', 'check.lua');

/** Why wrk cannot run here, with the command that fixes it; undefined when it can. */
export function wrkProblem(): string | undefined {
  if (!existsSync(WRK)) return `${WRK} is missing: install it with \`apt-get install -y wrk\` (or point BENCH_WRK at a wrk binary)`;
  return undefined;
}

interface WrkOutput {
  requests: number;
  durationUs: number;
  bad: number;
  first: string;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  timeouts: number;
  p50Us: number;
  p99Us: number;
}

export async function runWrk(url: string, headers: Record<string, string>, expectedBody: string, seconds: number, window: Window): Promise<GeneratorResult> {
  const args = ['-t1', `-c${settings.connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency', '-s', LUA];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(url, '--', expectedBody);
  window.begin();
  const wrk = spawnPinned('wrk', settings.loadCore, WRK, args, childEnv({}));
  const cpu = sampleCpu(wrk.pid);
  const code = await new Promise<number | null>((resolve) => wrk.child.once('exit', (c) => resolve(c)));
  window.end();
  const usage = cpu.stop();
  const text = wrk.output.join('');
  const line = /^BENCH_RESULT (.*)$/m.exec(text)?.[1];
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}) against ${url}:\n${text.slice(-2000)}`);
  const out = JSON.parse(line) as WrkOutput;
  const errors = out.connectErrors + out.readErrors + out.writeErrors + out.timeouts;
  return {
    ops: out.requests - out.bad,
    bad: out.bad,
    errors,
    firstProblem: out.bad > 0 ? `answered ${out.first}` : errors > 0 ? `socket errors: connect ${out.connectErrors}, read ${out.readErrors}, write ${out.writeErrors}, timeout ${out.timeouts}` : undefined,
    wallMs: out.durationUs / 1000,
    p50Ms: out.p50Us / 1000,
    p99Ms: out.p99Us / 1000,
    generatorPercent: usage && usage.wallMs > 0 ? Math.round((usage.ms / usage.wallMs) * 100) : null,
  };
}

export interface SocketLoadOptions {
  kind: 'sio' | 'ws';
  url: string;
  namespace?: string;
  headers: Record<string, string>;
  payload: string;
}

/** Runs the Node socket client; the window opens once every client is connected. */
export async function runSocketLoad(options: SocketLoadOptions, seconds: number, window: Window): Promise<GeneratorResult> {
  const spec = { ...options, clients: settings.connections, seconds };
  const client: Child = spawnNode(`${options.kind} load`, settings.loadCore, ['bench/clients/socket-load.ts', JSON.stringify(spec)], childEnv({}), 'pipe');
  const lines = createInterface({ input: client.child.stdout! });
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const onLine = (l: string) => {
        if (!/^(ready|result|error) /.test(l)) return;
        lines.off('line', onLine);
        client.child.off('exit', onExit);
        resolve(l);
      };
      const onExit = () => {
        lines.off('line', onLine);
        reject(new Error(`the ${options.kind} load generator exited early:\n${client.output.join('').slice(-2000)}`));
      };
      lines.on('line', onLine);
      client.child.once('exit', onExit);
      if (exited(client)) onExit();
    });
  try {
    const ready = await withTimeout(next(), 60_000, 'connecting the clients');
    if (!ready.startsWith('ready ')) throw new Error(`${options.kind} load generator: ${ready}`);
    window.begin();
    client.child.stdin?.write('go\n');
    const done = await withTimeout(next(), seconds * 1000 + 30_000, 'the run');
    window.end();
    if (!done.startsWith('result ')) throw new Error(`${options.kind} load generator: ${done}`);
    const out = JSON.parse(done.slice('result '.length)) as { ops: number; bad: number; errors: number; firstProblem?: string; wallMs: number; cpuMs: number; p50Ms: number; p99Ms: number };
    return {
      ops: out.ops,
      bad: out.bad,
      errors: out.errors,
      firstProblem: out.firstProblem,
      wallMs: out.wallMs,
      p50Ms: Math.round(out.p50Ms * 100) / 100,
      p99Ms: Math.round(out.p99Ms * 100) / 100,
      generatorPercent: Math.round((out.cpuMs / out.wallMs) * 100),
    };
  } finally {
    lines.close();
    await stopChild(client);
  }
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`load generator: ${what} took more than ${ms / 1000} s`)), ms)));
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
