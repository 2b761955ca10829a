import { type ClientRequestArgs, Agent as HttpAgent } from 'node:http';
import { createConnection, type NetConnectOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { DEMO_PASSWORD } from '../../lib/directory/demo.ts';
import { freePort } from '../../lib/free-port.ts';
import { HostAgent, type HostResponse } from './host-agent.ts';
import { startTestPortal, type TestPortal } from './portal.ts';
import { connect, type ConnectResult } from './sockets.ts';

/**
 * The two ways Atrium hosts apps, so one suite can run in both: every app under the portal's own
 * origin (`/apps/<tier>/<name>/`), or every app on an origin of its own (`APP_ORIGIN`), reached
 * through the hand-off. The portal listens on 127.0.0.1; app origins are `*.apps.localhost` names
 * sent as the Host header to the same port, so nothing needs name resolution.
 */
export const MODES = ['shared origin', 'app origins'] as const;
export type Mode = (typeof MODES)[number];

export interface ModePortal {
  mode: Mode;
  portal: TestPortal;
  port: number;
  /** The portal's origin, e.g. http://127.0.0.1:41234 */
  origin: string;
  /** Where the app's pages live: the portal's origin, or the app's own. */
  appOrigin(tier: string, name: string): string;
  /** The URL of a page of the app: `/apps/<tier>/<name><rest>` on the portal, or `<rest>` on the app's origin. */
  appUrl(tier: string, name: string, rest?: string): string;
  /** The name of the cookie that carries a session on the app's pages. */
  appSessionCookie: string;
  browser(): HostAgentInMode;
  signedIn(email: string): Promise<HostAgentInMode>;
  stopAll(): Promise<void>;
}

export async function startModePortal(mode: Mode, options: { env?: Record<string, string> } = {}): Promise<ModePortal> {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const appOrigins = mode === 'app origins';
  const env: Record<string, string> = { PUBLIC_URL: origin, ...options.env };
  if (appOrigins) env.APP_ORIGIN = `http://{tier}-{name}.apps.localhost:${port}`;
  const portal = await startTestPortal({ port, env });
  const self: ModePortal = {
    mode,
    portal,
    port,
    origin,
    appOrigin: (tier, name) => (appOrigins ? `http://${tier}-${name}.apps.localhost:${port}` : origin),
    appUrl: (tier, name, rest = '/') => (appOrigins ? `http://${tier}-${name}.apps.localhost:${port}${rest}` : `${origin}/apps/${tier}/${name}${rest}`),
    appSessionCookie: appOrigins ? 'atrium.app' : 'atrium.sid',
    browser: () => new HostAgentInMode(self),
    async signedIn(email) {
      const browser = new HostAgentInMode(self);
      const last = await browser.signIn(`${origin}/login`, email, DEMO_PASSWORD);
      if (last.status !== 200) throw new Error(`signing in ${email} ended at ${last.url} with ${last.status}`);
      return browser;
    },
    stopAll: () => portal.stopAll(),
  };
  return self;
}

/**
 * Connects every request to the portal on loopback whatever its host name, so clients that set
 * Host themselves (socket.io's polling transport does not let a caller override it) can use the
 * real app-origin URL, as a browser resolving `*.localhost` would.
 */
class LoopbackAgent extends HttpAgent {
  override createConnection(options: ClientRequestArgs): Duplex {
    return createConnection({ ...(options as NetConnectOpts), host: '127.0.0.1' } as NetConnectOpts);
  }
}
const loopback = new LoopbackAgent({ keepAlive: false });

/** A browser in one mode: visits apps as a person would and calls them as their pages' scripts would. */
export class HostAgentInMode extends HostAgent {
  constructor(readonly setup: ModePortal) {
    super(setup.port);
  }

  private hostOf(tier: string, name: string): string {
    return new URL(this.setup.appOrigin(tier, name)).host;
  }

  /** A navigation to a page of the app, followed through sign-in and hand-off as a browser would: the last hop. */
  async visit(tier: string, name: string, rest = '/', headers?: Record<string, string>): Promise<HostResponse> {
    return (await this.follow(this.setup.appUrl(tier, name, rest), 20, headers)).at(-1) as HostResponse;
  }

  /**
   * A request from one of the app's own pages (an API call, not followed). On an app origin the
   * page was loaded first, so the browser holds that origin's session if the gate let it in.
   */
  async call(tier: string, name: string, rest = '/', headers: Record<string, string> = { Accept: 'application/json' }): Promise<HostResponse> {
    if (this.setup.mode === 'app origins' && !this.jar(this.hostOf(tier, name)).has(this.setup.appSessionCookie)) await this.visit(tier, name, '/');
    return this.get(this.setup.appUrl(tier, name, rest), headers);
  }

  /** The Cookie header this browser sends to the app's pages. */
  cookieFor(tier: string, name: string): string {
    return [...this.jar(this.hostOf(tier, name))].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  /** The session cookie on the app's pages, if any. */
  appSession(tier: string, name: string): string | undefined {
    return this.jar(this.hostOf(tier, name)).get(this.setup.appSessionCookie);
  }

  /** The portal session's id (the signed `atrium.sid` value). */
  portalSessionId(): string {
    const sid = this.jar(new URL(this.setup.origin).host).get('atrium.sid');
    if (!sid) throw new Error('not signed in at the portal');
    return sid;
  }

  /** A socket.io connection from one of the app's pages to its namespace (entering the app first on an app origin). */
  async socket(tier: string, name: string, transports: ('websocket' | 'polling')[] = ['websocket'], headers: Record<string, string> = {}): Promise<ConnectResult> {
    if (this.setup.mode === 'app origins' && !this.appSession(tier, name)) await this.visit(tier, name, '/');
    const origin = this.setup.appOrigin(tier, name);
    return connect(origin, `/apps/${tier}/${name}`, this.cookieFor(tier, name) || undefined, transports, { Origin: origin, ...headers }, loopback);
  }

  /** The headers a websocket upgrade from one of the app's pages carries: where it goes, its Cookie and Origin. */
  upgradeTo(tier: string, name: string, rest: string): { url: string; headers: Record<string, string> } {
    const path = this.setup.mode === 'app origins' ? rest : `/apps/${tier}/${name}${rest}`;
    const cookie = this.cookieFor(tier, name);
    return {
      url: `ws://127.0.0.1:${this.setup.port}${path}`,
      headers: { Host: this.hostOf(tier, name), Origin: this.setup.appOrigin(tier, name), ...(cookie ? { Cookie: cookie } : {}) },
    };
  }

  async logout(): Promise<void> {
    const csrf = await this.csrfToken(this.setup.origin);
    const r = await this.request('POST', `${this.setup.origin}/logout`, { form: { _csrf: csrf } });
    if (r.status !== 303) throw new Error(`logout answered ${r.status}`);
  }
}
