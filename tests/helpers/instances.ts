import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../lib/config.ts';
import { createLogger } from '../../lib/log.ts';
import type { Portal } from '../../portal/app.ts';
import { startPortal } from '../../portal/main.ts';

/**
 * Portal instances of one deployment, as a balancer sees them: each on a port of its own, the same
 * environment otherwise (database, Redis, secrets, PUBLIC_URL). Either in this process (its
 * internals at hand, e.g. `portal.admin`) or a process of its own (`node --import tsx
 * portal/main.ts`, as `npm start` runs it), which can be SIGKILLed.
 *
 * Unlike tests/helpers/portal.ts, nothing listens on the port before the portal is built: a
 * balancer must find the port closed (and pass to the next instance), not open and silent.
 */
export interface Instance {
  name: string;
  port: number;
  /** http://127.0.0.1:<port>: the instance itself, past the balancer. */
  direct: string;
  /** The process it runs in (this one, for in-process instances). */
  pid: number;
  /** In-process instances only. */
  portal?: Portal;
  child?: ChildProcess;
  /** Its output so far (processes only; in-process instances log at TEST_LOG_LEVEL, silent by default). */
  output(): string;
  /** Stops it gracefully (and waits); a no-op when it is gone already. */
  stop(): Promise<void>;
}

const ROOT = new URL('../..', import.meta.url).pathname;
const START_DEADLINE_MS = 90_000;
const STOP_DEADLINE_MS = 30_000;

export async function startInProcessInstance(name: string, port: number, env: Record<string, string>): Promise<Instance> {
  const dataDir = mkdtempSync(join(tmpdir(), 'atrium-data-'));
  const config = loadConfig({ NODE_ENV: 'test', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...env });
  const running = await startPortal(config, createLogger(config.logLevel, false)).catch((err: unknown) => {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  });
  let stopped: Promise<void> | undefined;
  return {
    name,
    port,
    direct: `http://127.0.0.1:${port}`,
    pid: process.pid,
    portal: running.portal,
    output: () => '',
    stop: () =>
      (stopped ??= running.stop().finally(() => rmSync(dataDir, { recursive: true, force: true }))),
  };
}

export async function startProcessInstance(name: string, port: number, env: Record<string, string>): Promise<Instance> {
  const dataDir = mkdtempSync(join(tmpdir(), 'atrium-data-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'portal/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, NODE_ENV: 'test', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = once(child, 'exit');
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const deadline = Date.now() + START_DEADLINE_MS;
  while (!output.includes('Atrium is listening')) {
    if (gone()) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`instance ${name} exited (${child.exitCode ?? child.signalCode}) before listening:\n${output}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`instance ${name} did not listen in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  let stopped: Promise<void> | undefined;
  return {
    name,
    port,
    direct: `http://127.0.0.1:${port}`,
    pid: child.pid as number,
    child,
    output: () => output,
    stop: () =>
      (stopped ??= (async () => {
        if (!gone()) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dataDir, { recursive: true, force: true });
      })()),
  };
}

/** Waits until the instance says it is ready (database, Redis, provider through the balancer). */
export async function untilReady(instance: Instance, deadlineMs = START_DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let last = '';
  for (;;) {
    try {
      const response = await fetch(`${instance.direct}/readyz`);
      last = `${response.status} ${await response.text()}`;
      if (response.status === 200) return;
    } catch (err) {
      last = String(err);
    }
    if (Date.now() > deadline) throw new Error(`instance ${instance.name} not ready: ${last}\n${instance.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * `atrium_http_requests_total` of one instance, summed by area (portal, auth, idp, apps, admin),
 * read from its /metrics on loopback (local callers need no sign-in).
 */
export async function requestsByArea(instance: Instance): Promise<Record<string, number>> {
  const text = await (await fetch(`${instance.direct}/metrics`)).text();
  const totals: Record<string, number> = {};
  for (const match of text.matchAll(/^atrium_http_requests_total\{([^}]*)\} (\d+(?:\.\d+)?)$/gm)) {
    const area = /area="([^"]+)"/.exec(match[1] as string)?.[1] ?? '?';
    totals[area] = (totals[area] ?? 0) + Number(match[2]);
  }
  return totals;
}

/** `atrium_sockets_connected` of one instance. */
export async function socketsConnected(instance: Instance): Promise<number> {
  const text = await (await fetch(`${instance.direct}/metrics`)).text();
  return Number(/^atrium_sockets_connected (\d+)$/m.exec(text)?.[1] ?? NaN);
}
