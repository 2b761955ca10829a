import type { Agent } from './agent.ts';

/** Resolves as `work` does, or rejects once `ms` have passed: a request that never answers is a failure, not a stuck test. */
export function withinDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

export interface Answer {
  agent: string;
  path: string;
  status: number;
  /** What the error JSON said, when there was one. */
  code?: string;
  ms: number;
  at: number;
}

export interface Load {
  answers: Answer[];
  /** Requests that did not answer within the deadline (each is a failure of the test). */
  hung: string[];
  /** Ends the loops and waits for the requests in flight. */
  stop(): Promise<void>;
}

/**
 * Light load: each agent loops over its paths (JSON requests), one request at a time with a short
 * pause, until stopped. Every answer is recorded with how long it took (for the report, never
 * asserted on); a request without an answer within `deadlineMs` is recorded as hung.
 */
export function loopRequests(agents: { name: string; agent: Agent; paths: string[] }[], deadlineMs: number, pauseMs = 50): Load {
  const answers: Answer[] = [];
  const hung: string[] = [];
  let running = true;
  const loops = agents.map(async ({ name, agent, paths }) => {
    for (let i = 0; running; i++) {
      const path = paths[i % paths.length] as string;
      const started = Date.now();
      try {
        const response = await withinDeadline(agent.get(path, { Accept: 'application/json' }), deadlineMs, `${name} ${path}`);
        let code: string | undefined;
        try {
          code = (response.json() as { error?: string }).error;
        } catch {
          // not JSON
        }
        answers.push({ agent: name, path, status: response.status, ...(code ? { code } : {}), ms: Date.now() - started, at: started });
      } catch (err) {
        hung.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  });
  return {
    answers,
    hung,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Asks `probe` until `done` says yes or the deadline passes; returns the last value. */
export async function pollUntil<T>(probe: () => Promise<T>, done: (value: T) => boolean, deadlineMs: number, everyMs = 200): Promise<T> {
  const until = Date.now() + deadlineMs;
  let last = await probe();
  while (!done(last) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, everyMs));
    last = await probe();
  }
  return last;
}

/** The slowest answer and a count per status, for a test's summary line. */
export function summary(answers: Answer[]): { requests: number; statuses: Record<number, number>; slowestMs: number } {
  const statuses: Record<number, number> = {};
  for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  return { requests: answers.length, statuses, slowestMs: Math.max(0, ...answers.map((a) => a.ms)) };
}
