import { Agent as HttpAgent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * Balancers keep idle upstream connections for a while (AWS ALB 60 s, nginx 60–75 s) and reuse
 * them; a portal that closed them first would answer such a reuse with a reset. With the default
 * KEEP_ALIVE_TIMEOUT (90 s) a connection idle 6 s and one idle 70 s are both reused and answered.
 */
let portal: TestPortal;
beforeAll(async () => {
  portal = await startTestPortal();
});
afterAll(async () => {
  await portal?.stopAll();
});

function get(agent: HttpAgent, path: string): Promise<{ status: number; reused: boolean; keepAlive: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${portal.origin}${path}`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, keepAlive: String(res.headers['keep-alive']) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('kept-alive connections', () => {
  it('are reused after 6 s and after 70 s idle', { timeout: 120_000 }, async () => {
    // One socket per agent, so a reuse is a reuse of exactly that connection.
    const short = new HttpAgent({ keepAlive: true, maxSockets: 1, timeout: 120_000 });
    const long = new HttpAgent({ keepAlive: true, maxSockets: 1, timeout: 120_000 });
    const first = await get(short, '/healthz');
    expect(first).toMatchObject({ status: 200, reused: false, keepAlive: 'timeout=90' });
    expect((await get(long, '/healthz')).reused).toBe(false);
    await new Promise((r) => setTimeout(r, 6_000));
    expect(await get(short, '/healthz')).toMatchObject({ status: 200, reused: true });
    await new Promise((r) => setTimeout(r, 64_000));
    expect(await get(long, '/healthz')).toMatchObject({ status: 200, reused: true });
    short.destroy();
    long.destroy();
  });
});
