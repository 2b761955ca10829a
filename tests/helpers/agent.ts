/**
 * A small HTTP "browser" for tests: a cookie jar that honours Path and expiry, manual redirects,
 * and helpers for forms. It talks to the real portal over HTTP, so the login flow under test is
 * the real code flow through the embedded provider.
 */
interface Cookie {
  name: string;
  value: string;
  path: string;
  httpOnly: boolean;
  sameSite: string | undefined;
  secure: boolean;
  raw: string;
}

export interface AgentResponse {
  status: number;
  headers: Headers;
  location: string | undefined;
  text: string;
  url: string;
  json<T = any>(): T;
}

export class Agent {
  readonly cookies = new Map<string, Cookie>();

  constructor(readonly origin: string) {}

  cookie(name: string): Cookie | undefined {
    return this.cookies.get(name);
  }

  private cookieHeader(path: string): string {
    return [...this.cookies.values()]
      .filter((c) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  private store(setCookies: string[]): void {
    for (const raw of setCookies) {
      const [pair = '', ...attrs] = raw.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const attr = (key: string) => attrs.find((a) => a.toLowerCase().startsWith(`${key}=`))?.split('=')[1];
      const expires = attr('expires');
      const maxAge = attr('max-age');
      const expired = value === '' || (maxAge !== undefined && Number(maxAge) <= 0) || (expires !== undefined && Date.parse(expires) <= Date.now());
      if (expired) {
        this.cookies.delete(name);
        continue;
      }
      this.cookies.set(name, {
        name,
        value,
        path: attr('path') ?? '/',
        httpOnly: attrs.some((a) => a.toLowerCase() === 'httponly'),
        secure: attrs.some((a) => a.toLowerCase() === 'secure'),
        sameSite: attr('samesite')?.toLowerCase(),
        raw,
      });
    }
  }

  async request(
    method: string,
    target: string,
    options: { form?: Record<string, string>; json?: unknown; headers?: Record<string, string> } = {},
  ): Promise<AgentResponse> {
    const url = new URL(target, this.origin);
    const headers: Record<string, string> = { Accept: 'text/html,application/xhtml+xml', ...options.headers };
    const cookie = this.cookieHeader(url.pathname);
    if (cookie && url.origin === this.origin) headers.Cookie = cookie;
    let body: string | undefined;
    if (options.form) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(options.form).toString();
    } else if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.json);
    }
    const response = await fetch(url, { method, headers, body, redirect: 'manual' });
    if (url.origin === this.origin) this.store(response.headers.getSetCookie());
    const text = await response.text();
    const location = response.headers.get('location') ?? undefined;
    return {
      status: response.status,
      headers: response.headers,
      location: location === undefined ? undefined : new URL(location, url).href,
      text,
      url: url.href,
      json: () => JSON.parse(text),
    };
  }

  get(target: string, headers?: Record<string, string>): Promise<AgentResponse> {
    return this.request('GET', target, { headers });
  }

  /** GET and follow redirects on this origin; returns every hop, last one last. */
  async follow(target: string, headers?: Record<string, string>, limit = 15): Promise<AgentResponse[]> {
    const hops: AgentResponse[] = [];
    let next: string | undefined = target;
    while (next && hops.length < limit) {
      const response: AgentResponse = await this.get(next, headers);
      hops.push(response);
      next = response.status >= 300 && response.status < 400 ? response.location : undefined;
      if (next && new URL(next).origin !== this.origin) break;
    }
    return hops;
  }

  /**
   * The whole OpenID Connect code flow, as a browser does it: /login → provider → sign-in form →
   * consent skipped → /auth/callback → returnTo. Returns the final response.
   */
  async login(email: string, password: string, returnTo = '/'): Promise<AgentResponse> {
    const toForm = await this.follow(`/login?returnTo=${encodeURIComponent(returnTo)}`);
    const form = toForm.at(-1) as AgentResponse;
    const action = /<form method="post" action="([^"]+)"/.exec(form.text)?.[1];
    if (form.status !== 200 || !action) throw new Error(`expected the sign-in form, got ${form.status}: ${form.text.slice(0, 300)}`);
    const posted = await this.request('POST', action.replace(/&amp;/g, '&'), { form: { email, password } });
    if (posted.status !== 303 || !posted.location) return posted;
    const after = await this.follow(posted.location);
    return after.at(-1) as AgentResponse;
  }

  /** The CSRF token the portal put in its logout form for this session. */
  async csrfToken(): Promise<string> {
    const page = await this.get('/');
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
    if (!token) throw new Error('no CSRF token on the launcher (not signed in?)');
    return token;
  }
}

/** One signed-in agent per demo account, keyed by email. */
export async function signInEveryDemoAccount(origin: string): Promise<Map<string, Agent>> {
  const { DEMO_ACCOUNTS, DEMO_PASSWORD } = await import('../../lib/directory/demo.ts');
  const agents = new Map<string, Agent>();
  for (const account of DEMO_ACCOUNTS) {
    const agent = new Agent(origin);
    await agent.login(account.email, DEMO_PASSWORD);
    agents.set(account.email, agent);
  }
  return agents;
}

/** An agent signed in as a demo account (or any local account, given its password). */
export async function signedInAgent(origin: string, email: string, password?: string): Promise<Agent> {
  const agent = new Agent(origin);
  await agent.login(email, password ?? (await import('../../lib/directory/demo.ts')).DEMO_PASSWORD);
  return agent;
}
