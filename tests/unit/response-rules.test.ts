import type { IncomingHttpHeaders } from 'node:http';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../lib/log.ts';
import { isPortalCookieName, isPortalSetCookie, ResponseRules } from '../../portal/apps/response-rules.ts';

interface Warning {
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger(): { log: Logger; warnings: Warning[] } {
  const warnings: Warning[] = [];
  const log = { warn: (fields: Record<string, unknown>, message: string) => warnings.push({ fields, message }) } as unknown as Logger;
  return { log, warnings };
}

describe('isPortalCookieName', () => {
  it('knows the portal’s cookies, prefixed or not, in any case, with surrounding blanks', () => {
    for (const name of ['atrium', 'atrium.sid', 'atrium.sid.sig', 'atrium.tx.abc', 'ATRIUM.SID', 'Atrium', '__Host-atrium.sid', '__host-atrium', '__Secure-atrium.sid', '__SECURE-ATRIUM.x', ' atrium.sid ', '\tatrium']) {
      expect(isPortalCookieName(name), name).toBe(true);
    }
  });

  it('leaves other cookies alone', () => {
    for (const name of ['', 'app', 'atriumx', 'atrium-app', 'atrium_sid', 'myatrium.sid', 'x.atrium.sid', '__Host-app', '__Other-atrium.sid', 'x__Host-atrium.sid', 'atrium__Host-.sid', '__Host-__Secure-app', 'sid']) {
      expect(isPortalCookieName(name), name).toBe(false);
    }
  });
});

describe('isPortalSetCookie', () => {
  it('reads the name before the first "=" of the first part, as a browser does', () => {
    expect(isPortalSetCookie('atrium.sid=abc; Path=/; HttpOnly')).toBe(true);
    expect(isPortalSetCookie('__Host-atrium.sid=abc; Secure; Path=/')).toBe(true);
    expect(isPortalSetCookie(' Atrium.SID =abc')).toBe(true);
    expect(isPortalSetCookie('app=1; Path=/')).toBe(false);
    expect(isPortalSetCookie('app=atrium.sid=1')).toBe(false);
    expect(isPortalSetCookie('app=1; atrium.sid=2')).toBe(false);
    expect(isPortalSetCookie('app=1;atrium.sid=2')).toBe(false);
    expect(isPortalSetCookie('app')).toBe(false);
  });

  it('reads a nameless cookie by the name in its value, which is how a server reads it back', () => {
    expect(isPortalSetCookie('=atrium.sid=x; Path=/')).toBe(true);
    expect(isPortalSetCookie(' =atrium.sid=x')).toBe(true);
    expect(isPortalSetCookie('=atrium.sid')).toBe(true);
    expect(isPortalSetCookie('atrium.sid')).toBe(true);
    expect(isPortalSetCookie('atrium.sid; Path=/')).toBe(true);
    expect(isPortalSetCookie('atrium')).toBe(true);
    expect(isPortalSetCookie('atrium; Path=/')).toBe(true);
    expect(isPortalSetCookie('atrium; x=1')).toBe(true);
    expect(isPortalSetCookie('=atrium')).toBe(true);
    expect(isPortalSetCookie('=atrium=x')).toBe(true);
    expect(isPortalSetCookie('=atrium=x; Path=/')).toBe(true);
    expect(isPortalSetCookie('; =atrium.sid')).toBe(false);
    expect(isPortalSetCookie('=app=x')).toBe(false);
    expect(isPortalSetCookie('=app')).toBe(false);
    expect(isPortalSetCookie('=x; atrium.sid=1')).toBe(false);
    expect(isPortalSetCookie('')).toBe(false);
    expect(isPortalSetCookie('; atrium.sid=1')).toBe(false);
  });
});

describe('ResponseRules.filterUpstream', () => {
  it('drops portal Set-Cookie lines and keeps the app’s own, in order', () => {
    const { log } = recordingLogger();
    const headers: IncomingHttpHeaders = { 'set-cookie': ['a=1', 'atrium.sid=evil; Path=/', 'b=2', '__Host-atrium.tx=x'], 'content-type': 'text/html' };
    new ResponseRules(log).filterUpstream(headers, '/apps/ea/x');
    expect(headers).toEqual({ 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/html' });
  });

  it('removes the header when every line was a portal cookie', () => {
    const headers: IncomingHttpHeaders = { 'set-cookie': ['atrium.sid=evil', '=atrium.sid=x'], 'x-other': '1' };
    new ResponseRules().filterUpstream(headers, '/apps/ea/x');
    expect(headers).toEqual({ 'x-other': '1' });
    expect('set-cookie' in headers).toBe(false);
  });

  it('leaves the app’s own cookies exactly as they were', () => {
    const cookies = ['a=1', 'b=2; Path=/'];
    const headers: IncomingHttpHeaders = { 'set-cookie': cookies };
    new ResponseRules().filterUpstream(headers, '/apps/ea/x');
    expect(headers['set-cookie']).toBe(cookies);
    expect(cookies).toEqual(['a=1', 'b=2; Path=/']);
  });

  it('drops Clear-Site-Data and Service-Worker-Allowed, and nothing else', () => {
    const headers: IncomingHttpHeaders = { 'clear-site-data': '"*"', 'service-worker-allowed': '/', 'cache-control': 'no-store', 'content-security-policy': "default-src 'self'" };
    new ResponseRules().filterUpstream(headers, '/apps/ea/x');
    expect(headers).toEqual({ 'cache-control': 'no-store', 'content-security-policy': "default-src 'self'" });
  });

  it('logs a refusal once per app and header, naming the cookie', () => {
    const { log, warnings } = recordingLogger();
    const rules = new ResponseRules(log);
    rules.filterUpstream({ 'set-cookie': ['atrium.sid=1; Path=/', 'atrium.other=2'], 'clear-site-data': '"*"' }, '/apps/ea/x');
    rules.filterUpstream({ 'set-cookie': ['atrium.sid=1'], 'clear-site-data': '"*"', 'service-worker-allowed': '/' }, '/apps/ea/x');
    rules.filterUpstream({ 'set-cookie': ['=atrium.sid=1'] }, '/apps/ea/y');
    expect(warnings.map((w) => w.fields)).toStrictEqual([
      { app: '/apps/ea/x', header: 'set-cookie', cookie: 'atrium.sid' },
      { app: '/apps/ea/x', header: 'clear-site-data' },
      { app: '/apps/ea/x', header: 'service-worker-allowed' },
      { app: '/apps/ea/y', header: 'set-cookie', cookie: '' },
    ]);
    expect(warnings[0]!.message).toMatch(/^app response header refused: apps may not set portal cookies, clear site data, widen a service worker scope or redirect a front proxy internally/);
  });

  it('drops front-proxy internal redirects, and keeps headers that only tune streaming', () => {
    const headers: IncomingHttpHeaders = { 'x-accel-redirect': '/me', 'x-sendfile': '/etc/passwd', 'x-lighttpd-send-file': '/etc/passwd', 'x-accel-buffering': 'no', 'content-type': 'text/event-stream' };
    new ResponseRules().filterUpstream(headers, 'a');
    expect(headers).toStrictEqual({ 'x-accel-buffering': 'no', 'content-type': 'text/event-stream' });
  });

  it('names a refused cookie by at most 64 characters, and a line without "=" by nothing', () => {
    const { log, warnings } = recordingLogger();
    const rules = new ResponseRules(log);
    const long = `atrium.${'x'.repeat(100)}`;
    rules.filterUpstream({ 'set-cookie': [`  ${long}=1`] }, 'a');
    rules.filterUpstream({ 'set-cookie': ['atrium.sid'] }, 'b');
    expect(warnings.map((w) => w.fields.cookie)).toEqual([long.slice(0, 64), '']);
  });

  it('logs nothing when the app behaves, and works without a logger', () => {
    const { log, warnings } = recordingLogger();
    new ResponseRules(log).filterUpstream({ 'set-cookie': ['a=1'], 'content-type': 'text/plain' }, 'a');
    new ResponseRules(log).filterUpstream({}, 'a');
    expect(warnings).toEqual([]);
    const headers: IncomingHttpHeaders = { 'set-cookie': ['atrium.sid=1'], 'clear-site-data': '"*"' };
    expect(() => new ResponseRules().filterUpstream(headers, 'a')).not.toThrow();
    expect(headers).toEqual({});
  });
});

/** A real ServerResponse that nothing is written to: headers only. */
function response(): ServerResponse {
  return new ServerResponse(new IncomingMessage(new Socket()));
}

describe('ResponseRules.guard (in-process apps)', () => {
  const run = async (res: ServerResponse, handler: (res: ServerResponse) => unknown, rules = new ResponseRules()) => {
    const guarded = rules.guard('/apps/ea/x', async () => {
      await handler(res);
    });
    await guarded({ res } as never, async () => {});
  };

  it('drops portal cookies and refused headers the app set, keeping its own cookies', async () => {
    const res = response();
    await run(res, (r) => {
      r.setHeader('set-cookie', ['app=1', 'atrium.sid=evil', '__Secure-atrium.x=1']);
      r.setHeader('clear-site-data', '"cookies"');
      r.setHeader('service-worker-allowed', '/');
      r.setHeader('content-type', 'text/plain');
    });
    expect(res.getHeader('set-cookie')).toEqual(['app=1']);
    expect(res.hasHeader('clear-site-data')).toBe(false);
    expect(res.hasHeader('service-worker-allowed')).toBe(false);
    expect(res.getHeader('content-type')).toBe('text/plain');
  });

  it('removes Set-Cookie altogether when the app set only portal cookies', async () => {
    const res = response();
    await run(res, (r) => r.setHeader('set-cookie', 'atrium.sid=evil'));
    expect(res.hasHeader('set-cookie')).toBe(false);
  });

  it('leaves an app’s own cookies untouched, even as a single string', async () => {
    const res = response();
    await run(res, (r) => r.setHeader('set-cookie', 'app=1'));
    expect(res.getHeader('set-cookie')).toBe('app=1');
    const list = response();
    await run(list, (r) => r.setHeader('set-cookie', ['a=1', 'b=2']));
    expect(list.getHeader('set-cookie')).toEqual(['a=1', 'b=2']);
  });

  it('keeps the portal’s own Set-Cookie lines from before the app ran, even if the app replaced them', async () => {
    const res = response();
    res.setHeader('set-cookie', 'atrium.sid.sig=portal-resigned; Path=/');
    await run(res, (r) => r.setHeader('set-cookie', ['atrium.sid=evil', 'app=1']));
    expect(res.getHeader('set-cookie')).toEqual(['atrium.sid.sig=portal-resigned; Path=/', 'app=1']);

    const removed = response();
    removed.setHeader('set-cookie', ['atrium.sid=portal', 'atrium.sid.sig=portal']);
    await run(removed, (r) => r.removeHeader('set-cookie'));
    expect(removed.hasHeader('set-cookie')).toBe(false);

    // Lines the portal set before are kept once, not repeated with the app's.
    const kept = response();
    kept.setHeader('set-cookie', ['atrium.sid=portal', 'portal-pref=1']);
    await run(kept, (r) => r.appendHeader('set-cookie', 'app=1'));
    expect(kept.getHeader('set-cookie')).toEqual(['atrium.sid=portal', 'portal-pref=1', 'app=1']);

    const appended = response();
    appended.setHeader('set-cookie', ['atrium.sid=portal']);
    await run(appended, (r) => r.setHeader('set-cookie', ['atrium.sid=portal', 'atrium.other=evil']));
    expect(appended.getHeader('set-cookie')).toEqual(['atrium.sid=portal']);
  });

  it('filters the headers when the app fails, and passes the error on', async () => {
    const res = response();
    const boom = new Error('later');
    const guarded = new ResponseRules().guard('/apps/ea/x', async () => {
      res.setHeader('set-cookie', ['atrium.sid=evil', 'app=1']);
      res.setHeader('clear-site-data', '"*"');
      throw boom;
    });
    await expect(guarded({ res } as never, async () => {})).rejects.toBe(boom);
    expect(res.getHeader('set-cookie')).toEqual(['app=1']);
    expect(res.hasHeader('clear-site-data')).toBe(false);
    const only = response();
    const portalOnly = new ResponseRules().guard('/apps/ea/x', async () => {
      only.setHeader('set-cookie', 'atrium.sid=evil');
      throw boom;
    });
    await expect(portalOnly({ res: only } as never, async () => {})).rejects.toBe(boom);
    expect(only.hasHeader('set-cookie')).toBe(false);
  });

  it('passes next through to the app and returns what the app returned', async () => {
    const res = response();
    let nextCalled = false;
    const guarded = new ResponseRules().guard('/apps/ea/x', async (_ctx, next) => {
      await next();
    });
    await guarded({ res } as never, async () => {
      nextCalled = true;
    });
    expect(nextCalled).toBe(true);
  });

  it('logs each refusal once per app and header', async () => {
    const { log, warnings } = recordingLogger();
    const rules = new ResponseRules(log);
    for (let i = 0; i < 2; i++) {
      await run(response(), (r) => {
        r.setHeader('set-cookie', ['atrium.sid=1']);
        r.setHeader('service-worker-allowed', '/');
      }, rules);
    }
    expect(warnings.map((w) => w.fields)).toStrictEqual([
      { app: '/apps/ea/x', header: 'set-cookie', cookie: 'atrium.sid' },
      { app: '/apps/ea/x', header: 'service-worker-allowed' },
    ]);
  });

  it('does nothing once the headers have been sent', async () => {
    const res = response();
    const { log, warnings } = recordingLogger();
    await run(res, (r) => {
      r.setHeader('set-cookie', ['atrium.sid=late']);
      r.setHeader('clear-site-data', '"*"');
      Object.defineProperty(r, 'headersSent', { value: true });
    }, new ResponseRules(log));
    expect(res.getHeader('set-cookie')).toEqual(['atrium.sid=late']);
    expect(res.hasHeader('clear-site-data')).toBe(true);
    expect(warnings).toEqual([]);
  });
});
