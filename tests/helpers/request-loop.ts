/**
 * Light, steady load for outage tests: a few loops, each sending one kind of request over and over
 * (one at a time, a short pause between), every answer recorded with the phase of the test it came
 * in. A request that has no answer within `deadlineMs` is recorded as hung (status 0), so a hang is
 * a failure to report rather than a stuck test. Durations are kept for the report, never asserted.
 */
export interface Answer {
  loop: string;
  phase: string;
  status: number;
  ms: number;
  retryAfter: string | null;
  /** The error JSON's code, when there was one. */
  code: string | undefined;
  /** Why there is no status (a hang, a refused connection). */
  failure: string | undefined;
}

export interface RequestLoops {
  answers: Answer[];
  /** Labels the answers of requests sent from now on. */
  phase(name: string): void;
  /** Answers of one phase (and loop). */
  of(phase: string, loop?: string): Answer[];
  /** Ends the loops and waits for the requests in flight. */
  stop(): Promise<void>;
}

export type Send = (signal: AbortSignal) => Promise<{ status: number; headers: Headers; text: string }>;

export function startRequestLoops(loops: Record<string, Send>, deadlineMs: number, pauseMs = 100): RequestLoops {
  const answers: Answer[] = [];
  let phase = 'start';
  let running = true;
  const runs = Object.entries(loops).map(async ([loop, send]) => {
    while (running) {
      const sentIn = phase;
      const started = Date.now();
      try {
        const response = await send(AbortSignal.timeout(deadlineMs));
        answers.push({ loop, phase: sentIn, status: response.status, ms: Date.now() - started, retryAfter: response.headers.get('retry-after'), code: errorCode(response.text), failure: undefined });
      } catch (err) {
        const failure = (err as Error).name === 'TimeoutError' ? `no answer within ${deadlineMs} ms` : String((err as Error).message);
        answers.push({ loop, phase: sentIn, status: 0, ms: Date.now() - started, retryAfter: null, code: undefined, failure });
      }
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  });
  return {
    answers,
    phase(name) {
      phase = name;
    },
    of(wanted, loop) {
      return answers.filter((a) => a.phase === wanted && (loop === undefined || a.loop === loop));
    },
    async stop() {
      running = false;
      await Promise.all(runs);
    },
  };
}

function errorCode(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { error?: unknown };
    return typeof body.error === 'string' ? body.error : undefined;
  } catch {
    return undefined;
  }
}

/** "status×count" per loop, e.g. `app 200×41 · readyz 503×12`: what an assertion failure shows. */
export function summary(answers: Answer[]): string {
  const counts = new Map<string, number>();
  for (const a of answers) {
    const key = `${a.loop} ${a.status}${a.failure ? ` (${a.failure})` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, n]) => `${key}×${n}`).join(' · ');
}

/** The longest answer time per loop, for the report. */
export function slowest(answers: Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) out[a.loop] = Math.max(out[a.loop] ?? 0, a.ms);
  return out;
}
