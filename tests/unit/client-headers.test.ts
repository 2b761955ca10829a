import { describe, expect, it } from 'vitest';
import { clientMayNotSend } from '../../portal/apps/client-headers.ts';

/** Header-name prefixes that only a proxy may set (written out here, not read from the module). */
const PREFIXES = [
  'x-atrium-',
  'x-forwarded-',
  'x-auth-request-',
  'remote-',
  'x-remote-',
  'x-webauth-',
  'x-authentik-',
  'x-pomerium-',
  'cf-access-',
  'x-goog-authenticated-',
  'x-goog-iap-',
  'x-amzn-oidc-',
  'x-ms-client-principal',
];
const NAMES = [
  'authorization',
  'proxy-authorization',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'x-cluster-client-ip',
  'x-original-url',
  'x-original-uri',
  'x-original-host',
  'x-original-method',
  'x-rewrite-url',
  'gap-auth',
];

describe('clientMayNotSend', () => {
  it('drops every header under the proxies’ prefixes', () => {
    for (const prefix of PREFIXES) {
      expect(clientMayNotSend(`${prefix}user`), `${prefix}user`).toBe(true);
      expect(clientMayNotSend(prefix), prefix).toBe(true);
    }
    for (const name of ['x-atrium-user', 'x-atrium-level', 'x-atrium-assertion', 'x-forwarded-for', 'x-forwarded-user', 'x-forwarded-prefix', 'remote-user', 'remote-groups', 'x-webauth-user', 'x-ms-client-principal-name', 'x-ms-client-principal']) {
      expect(clientMayNotSend(name), name).toBe(true);
    }
  });

  it('drops each of the named headers, exactly', () => {
    for (const name of NAMES) expect(clientMayNotSend(name), name).toBe(true);
  });

  it('matches a dash spelled as an underscore or a dot, as CGI, WSGI and Rack read them', () => {
    for (const name of ['x_atrium_user', 'x.atrium.user', 'x-atrium_user', 'x_forwarded_for', 'remote_user', 'x_real_ip', 'x.real.ip', 'proxy_authorization', 'gap_auth', 'x_ms_client_principal_id', 'cf_access_jwt_assertion', 'x_original_url']) {
      expect(clientMayNotSend(name), name).toBe(true);
    }
  });

  it('lets ordinary request headers through', () => {
    for (const name of ['accept', 'accept-language', 'content-type', 'content-length', 'cookie', 'host', 'user-agent', 'referer', 'origin', 'x-requested-with', 'x-request-id', 'x-csrf-token', 'cache-control', 'if-none-match', 'upgrade', 'connection', 'sec-websocket-key']) {
      expect(clientMayNotSend(name), name).toBe(false);
    }
  });

  it('anchors the named headers at both ends and the prefixes at the start', () => {
    for (const name of ['authorization-hint', 'xauthorization', 'my-authorization', 'forwardedx', 'not-forwarded', 'x-real-ip-2', 'a-x-real-ip', 'gap-authx', 'my-x-atrium-user', 'xx-forwarded-for', 'premote-user', 'x-forwarded', 'remote', 'x-atrium', 'x-original-urls', 'x-originalurl']) {
      expect(clientMayNotSend(name), name).toBe(false);
    }
  });

  it('does not read a dash into other characters', () => {
    for (const name of ['xxatriumxuser', 'x atrium user', 'remote+user', 'x*forwarded*for', 'remoteuser', 'x-realip']) {
      expect(clientMayNotSend(name), name).toBe(false);
    }
  });
});
