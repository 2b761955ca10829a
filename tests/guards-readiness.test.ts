import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { startPrivateRedis, type PrivateRedis } from './helpers/private-redis.ts';

/**
 * `/readyz` tells a load balancer whether this instance can serve: with REDIS_URL, Redis going
 * away makes it 503 (naming Redis as what fails), promptly rather than hanging, and it is ready
 * again once Redis is back. The Redis here is the test's own, so stopping it disturbs no one.
 */
const DEADLINE_MS = 20_000;
let redis: PrivateRedis;
let portal: TestPortal;

beforeAll(async () => {
  redis = await startPrivateRedis();
  portal = await startTestPortal({ env: { REDIS_URL: redis.url } });
});
afterAll(async () => {
  await portal?.stopAll();
  await redis?.stop();
});

interface Readiness {
  status: number;
  body: { status: string; checks: Record<string, string> };
}
async function readiness(): Promise<Readiness> {
  // A hung probe is a failure too: a balancer gives up on it, so this does.
  const response = await fetch(`${portal.origin}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: (await response.json()) as Readiness['body'] };
}
/** Asks until the answer has `status`, or the deadline passes; returns the last answer. */
async function readinessBecomes(status: number): Promise<Readiness> {
  const until = Date.now() + DEADLINE_MS;
  let last = await readiness();
  while (last.status !== status && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    last = await readiness();
  }
  return last;
}

describe('/readyz with REDIS_URL', () => {
  it('answers 503 naming Redis while Redis is down, and 200 again once it is back', async () => {
    expect(await readiness()).toEqual({ status: 200, body: expect.objectContaining({ status: 'ready', checks: expect.objectContaining({ redis: 'ok', database: 'ok' }) }) });

    await redis.stop();
    const down = await readinessBecomes(503);
    expect(down.status).toBe(503);
    expect(down.body).toMatchObject({ status: 'not ready', checks: { redis: 'failing', database: 'ok' } });
    // Liveness is not readiness: the process itself is fine.
    expect((await fetch(`${portal.origin}/healthz`)).status).toBe(200);

    redis = await startPrivateRedis(redis.port);
    const back = await readinessBecomes(200);
    expect(back.body).toMatchObject({ status: 'ready', checks: { redis: 'ok' } });
  });
});
