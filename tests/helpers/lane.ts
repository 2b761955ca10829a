import { expect } from 'vitest';
import { DEMO_PASSWORD } from '../../lib/directory/demo.ts';
import type { SessionData } from '../../lib/sessions/store.ts';
import type { PortalSession } from '../../portal/http/context.ts';
import { Agent } from './agent.ts';
import type { TestPortal } from './portal.ts';
import type { RawResponse } from './raw-http.ts';

/** What the fast-lane suites do to a portal's sessions and metrics (tests/fast-lane*.test.ts, tests/attack-fast-lane.test.ts). */
export function laneHelpers(portal: () => TestPortal) {
  return {
    /** A fresh browser signed in as `email`, with its Cookie header, session id and signature. */
    async signedIn(email = 'stable@example.com'): Promise<{ agent: Agent; cookie: string; id: string; signature: string }> {
      const agent = new Agent(portal().origin);
      await agent.login(email, DEMO_PASSWORD);
      const id = agent.cookie('atrium.sid')?.value as string;
      const signature = agent.cookie('atrium.sid.sig')?.value as string;
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      return { agent, cookie: `atrium.sid=${id}; atrium.sid.sig=${signature}`, id, signature };
    },
    /** The session as the store holds it now (past the cache); undefined once it is gone. */
    async stored(id: string): Promise<(PortalSession & SessionData) | undefined> {
      return (await portal().portal.sessions.getFresh(id))?.data as unknown as (PortalSession & SessionData) | undefined;
    },
    /** Rewrites a stored session (as another instance, or time passing, would leave it). */
    async editSession(id: string, edit: (data: PortalSession & SessionData) => void): Promise<void> {
      const store = portal().portal.sessions;
      const found = await store.getFresh(id);
      if (!found) throw new Error('no such session');
      const data = structuredClone(found.data) as PortalSession & SessionData;
      edit(data);
      expect(await store.update(id, data, 3_600_000, { subject: data.sub, idpSid: data.idpSid ?? null })).toBe(true);
    },
    /** How many app requests /metrics has counted with a status class, e.g. `2xx`. */
    async appRequestsCounted(statusClass: string): Promise<number> {
      const text = await (await fetch(`${portal().origin}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`atrium_http_requests_total{area="apps",status="${statusClass}"}`));
      return line ? Number(line.split(' ').at(-1)) : 0;
    },
  };
}

/** A JSON API call's options with a Cookie header. */
export const apiCall = (cookie: string, extra: Record<string, string> = {}) => ({ headers: { cookie, accept: 'application/json', ...extra } });
export const jsonOf = (res: RawResponse) => JSON.parse(res.body) as Record<string, unknown>;
