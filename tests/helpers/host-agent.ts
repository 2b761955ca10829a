import { request as httpRequest } from 'node:http';

/**
 * A browser stand-in for several hosts on one loopback port (the portal's host and app origins such
 * as `ea-notes.apps.localhost`): every request goes to 127.0.0.1 with the URL's Host header, so no
 * name resolution is needed, and each host keeps its own cookie jar — host-only cookies, as a
 * browser keeps them. Redirects are followed by hand, across hosts.
 */
export interface HostResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  setCookies: string[];
  location: string | undefined;
  text: string;
  url: string;
  json<T = any>(): T;
}

export class HostAgent {
  /** host (with port) → cookie name → value */
  readonly jars = new Map<string, Map<string, string>>();

  constructor(readonly port: number) {}

  jar(host: string): Map<string, string> {
    let jar = this.jars.get(host);
    if (!jar) this.jars.set(host, (jar = new Map()));
    return jar;
  }

  request(method: string, target: string, options: { form?: Record<string, string>; headers?: Record<string, string>; cookies?: boolean } = {}): Promise<HostResponse> {
    const url = new URL(target);
    const jar = this.jar(url.host);
    const headers: Record<string, string> = { Host: url.host, Accept: 'text/html', ...options.headers };
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (cookie && options.cookies !== false) headers.Cookie = cookie;
    const body = options.form ? new URLSearchParams(options.form).toString() : undefined;
    if (body !== undefined) headers['Content-Type'] = 'application/x-www-form-urlencoded';
    return sendRaw(this.port, method, url, headers, body).then((response) => {
      for (const raw of response.setCookies) {
        const [pair = ''] = raw.split(';');
        const eq = pair.indexOf('=');
        const name = pair.slice(0, eq).trim();
        const value = pair.slice(eq + 1).trim();
        const expired = value === '' || /max-age=0/i.test(raw) || /expires=Thu, 01 Jan 1970/i.test(raw);
        if (expired) jar.delete(name);
        else jar.set(name, value);
      }
      return response;
    });
  }

  get(target: string, headers?: Record<string, string>): Promise<HostResponse> {
    return this.request('GET', target, { headers });
  }

  /** GETs and follows redirects across hosts; a hand-off page's form is posted as its script would. Every hop, last last. */
  async follow(target: string, limit = 20, headers?: Record<string, string>): Promise<HostResponse[]> {
    const hops: HostResponse[] = [];
    let next: HostResponse = await this.get(target, headers);
    hops.push(next);
    while (hops.length < limit) {
      if (next.status >= 300 && next.status < 400 && next.location) next = await this.get(next.location);
      else {
        const handoff = handoffForm(next.text);
        if (!handoff) break;
        next = await this.request('POST', handoff.action, { form: { code: handoff.code } });
      }
      hops.push(next);
    }
    return hops;
  }

  /** Signs in at the embedded provider wherever the flow started (an app origin, say) and follows it to the end. */
  async signIn(startUrl: string, email: string, password: string): Promise<HostResponse> {
    const toForm = (await this.follow(startUrl)).at(-1) as HostResponse;
    const action = /<form method="post" action="([^"]+)"/.exec(toForm.text)?.[1];
    if (toForm.status !== 200 || !action) throw new Error(`expected the sign-in form, got ${toForm.status} at ${toForm.url}: ${toForm.text.slice(0, 300)}`);
    const posted = await this.request('POST', new URL(action.replace(/&amp;/g, '&'), toForm.url).href, { form: { email, password } });
    if (posted.status !== 303 || !posted.location) return posted;
    return (await this.follow(posted.location)).at(-1) as HostResponse;
  }

  /** The portal's CSRF token for this browser's session (from the launcher's sign-out form). */
  async csrfToken(portalOrigin: string): Promise<string> {
    const page = await this.get(`${portalOrigin}/`);
    const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
    if (!token) throw new Error('no CSRF token on the launcher (not signed in?)');
    return token;
  }
}

/** The hand-off page's form: where it posts and the code it carries. */
export function handoffForm(html: string): { action: string; code: string } | undefined {
  const action = /<form method="post" action="([^"]+)" id="handoff">/.exec(html)?.[1];
  const code = /name="code" value="([^"]+)"/.exec(html)?.[1];
  return action && code ? { action: action.replace(/&amp;/g, '&'), code } : undefined;
}

/** One request to 127.0.0.1:`port` for `url` (its host in the Host header the caller set), the answer read whole. */
export function sendRaw(port: number, method: string, url: URL, headers: Record<string, string>, body?: string | Buffer): Promise<HostResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: `${url.pathname}${url.search}`, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const location = res.headers.location;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          setCookies: ([] as string[]).concat(res.headers['set-cookie'] ?? []),
          location: location === undefined ? undefined : new URL(location, url).href,
          text,
          url: url.href,
          json: () => JSON.parse(text),
        });
      });
    });
    // A server that refuses early may close while the body is still being written.
    req.on('error', reject);
    req.end(body);
  });
}
