import type { IncomingHttpHeaders } from 'node:http';
import { isPortalCookieName } from './response-rules.ts';

/**
 * Request headers a client may not pass on to an upstream app. An app behind Atrium may once have
 * sat behind another auth proxy, or be a product that trusts one (Grafana's auth proxy, Jenkins,
 * anything reading Remote-User): a header naming a user, a group, a token, a client address or
 * certificate, or a rewritten URL is believed only when a proxy set it, so a client's copy never
 * gets through. The portal then sets its own X-Forwarded-For, -Host, -Proto and -Prefix, and the
 * X-Atrium-* identity. (The portal is the apps' only authentication: a client's credentials, in
 * Authorization or a proxy's token headers, are the portal's to check, never the app's.)
 */
const PREFIXES = [
  'x-atrium-', // the portal's own identity headers
  'x-forwarded-', // -user, -email, -groups, -preferred-username, -access-token (oauth2-proxy), -client-cert (Envoy), -tls-client-cert (Traefik), and any the portal does not set
  'x-auth-', // oauth2-proxy's X-Auth-Request-*; Keycloak Gatekeeper / Louketo Proxy: X-Auth-Username, -Email, -Groups, -Roles, -Subject, -Userid, -Token, -ExpiresIn, and one per added claim
  'remote-', // Authelia: Remote-User, -Groups, -Email, -Name
  'x-remote-',
  'x-webauth-', // Grafana's auth proxy default
  'x-authentik-',
  'x-pomerium-',
  'cf-access-', // Cloudflare Access
  'x-goog-authenticated-', // Google IAP
  'x-goog-iap-',
  'x-amzn-oidc-', // AWS ALB
  'x-amzn-mtls-', // AWS ALB mutual TLS: -Clientcert, -Clientcert-Subject, -Issuer, -Serial-Number, -Leaf, -Validity
  'x-ms-client-principal', // Azure App Service
  'x-ms-token-', // Azure App Service's token store: X-MS-TOKEN-AAD-ACCESS-TOKEN, -ID-TOKEN…
  'x-authenticated-', // Kong: -Userid, -Scope, -Groups; Squid and ICAP: X-Authenticated-User
  'x-consumer-', // Kong: -ID, -Custom-ID, -Username, -Groups
  'x-credential-', // Kong: -Identifier, -Username
  'x-anonymous-', // Kong: -Consumer, -Groups
  'x-vouch-', // Vouch Proxy: -User, -Success, -Idp-Claims-*, -Idp-Accesstoken, -Idp-Idtoken
  'oidc-', // Apache mod_auth_openidc: OIDC_CLAIM_*, OIDC_access_token, OIDC_id_token
  'x-ssl-', // client certificates as nginx and HAProxy set-ups pass them: X-SSL-Client-Cert, -Verify, -S-DN, -DN, -CN
  'ssl-client-', // Apache's SSL_CLIENT_* as headers (SSL_CLIENT_S_DN, SSL_CLIENT_CERT, SSL_CLIENT_VERIFY)
  'x-client-cert', // X-Client-Cert, and Google Cloud load balancing's mutual TLS X-Client-Cert-Present, -Chain-Verified, -Hash…
];
const NAMES = [
  'authorization', // the portal's to check; the upstream gets the assertion instead
  'proxy-authorization',
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'x-cluster-client-ip',
  'x-original-url', // IIS/ASP.NET rewrites: would route the app to another path than the gate saw
  'x-original-uri',
  'x-original-host',
  'x-original-method',
  'x-rewrite-url',
  'gap-auth', // oauth2-proxy
  'x-user', // names nginx auth_request and forward-auth set-ups commonly pass on
  'x-username',
  'x-user-id',
  'x-user-email',
  'x-email',
  'x-groups',
  'x-userinfo', // Kong OpenID Connect (kong-oidc): the user info as base64 JSON
  'x-id-token',
  'x-access-token',
  'x-ssl', // HAProxy's "the client spoke TLS" flag
  'x-client-verify', // nginx mutual TLS set-ups: $ssl_client_verify, $ssl_client_s_dn
  'x-client-dn',
  'x-arr-clientcert', // Azure App Service's client certificate
];

/**
 * CGI, WSGI and Rack turn `X_Forwarded_User` (and some servers `X.Forwarded.User`) into the same
 * variable as `X-Forwarded-User`, so every dash matches dash, underscore or dot. Node lowercases
 * header names, so case needs no work. Compiled once: a request pays one test per header.
 */
function spellings(name: string): string {
  return name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/-/g, '[-_.]');
}
const CLIENT_MAY_NOT_SEND = new RegExp(`^(?:${PREFIXES.map(spellings).join('|')}|(?:${NAMES.map(spellings).join('|')})$)`);

/** Whether a request header (its name as Node gives it, lowercase) must not reach an upstream. */
export function clientMayNotSend(name: string): boolean {
  return CLIENT_MAY_NOT_SEND.test(name);
}

/**
 * The answers for header names seen so far: a browser sends the same dozen names on every request.
 * Names are the client's to choose, so the memo stops growing at a bound (then the test just runs).
 */
const MAX_REMEMBERED_NAMES = 1_000;
const refusedNames = new Map<string, boolean>();
function refusedName(name: string): boolean {
  let refused = refusedNames.get(name);
  if (refused === undefined) {
    refused = HOP_BY_HOP_HTTP.has(name) || clientMayNotSend(name);
    if (refusedNames.size < MAX_REMEMBERED_NAMES) refusedNames.set(name, refused);
  }
  return refused;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) besides those Connection names: the client's connection's, not the upstream's. */
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'upgrade'];
/**
 * What an HTTP request to an upstream never carries of the client's: the hop-by-hop headers, and
 * the framing the forwarder writes itself (Transfer-Encoding: the body is re-framed; Expect: Node
 * has already answered the client's 100-continue, so the upstream gets the body without asking).
 */
const HOP_BY_HOP_HTTP = new Set(['connection', ...HOP_BY_HOP, 'transfer-encoding', 'expect']);

/**
 * Ends the client's hop before the request goes on (RFC 9110 §7.6.1): every header the client's
 * `Connection` names is dropped, and so is `Connection` itself, with Keep-Alive, Proxy-Connection,
 * TE and Upgrade. Otherwise a client could list the portal's own headers there
 * (`Connection: Upgrade, X-Atrium-Assertion, X-Atrium-Encoded`) and have the next standards-following
 * hop drop them after the portal set them. Call it before the portal sets its headers.
 *
 * For a websocket `upgrade` the request keeps its Upgrade header and says `Connection: Upgrade`,
 * exactly; an HTTP request gets no Connection at all (the proxy writes its own).
 */
export function endClientHop(headers: IncomingHttpHeaders, upgrade: boolean): void {
  const connection = headers.connection;
  if (connection !== undefined) {
    for (const token of String(connection).split(',')) {
      const name = token.trim().toLowerCase();
      if (name !== 'upgrade' || !upgrade) delete headers[name];
    }
  }
  for (const name of HOP_BY_HOP) if (name !== 'upgrade' || !upgrade) delete headers[name];
  if (upgrade) headers.connection = 'Upgrade';
  else delete headers.connection;
}

/**
 * The client's request headers as an upstream app may see them (a new object; the request's own are
 * left as they are): the client's hop ended as endClientHop does, every header clientMayNotSend
 * names dropped, and the portal's cookies taken out of Cookie. The portal adds its own after.
 */
export function clientHeadersForUpstream(incoming: IncomingHttpHeaders): Record<string, string | string[]> {
  // No prototype: a header named __proto__ is a header like any other here.
  const out: Record<string, string | string[]> = Object.create(null);
  const connection = incoming.connection;
  const named = connection === undefined ? undefined : String(connection).toLowerCase();
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || refusedName(name)) continue;
    if (named !== undefined && listsName(named, name)) continue;
    if (name === 'cookie') {
      const kept = withoutPortalCookies(value as string);
      if (kept !== undefined) out.cookie = kept;
      continue;
    }
    out[name] = value;
  }
  return out;
}

/** Whether a Connection header's (lowercased) value lists a header name. */
export function listsName(connection: string, name: string): boolean {
  if (!connection.includes(name)) return false;
  return connection.split(',').some((token) => token.trim() === name);
}

/** The portal's cookies (`atrium.…`, also `__Host-`/`__Secure-` prefixed) are never an upstream's to see. */
export function withoutPortalCookies(cookie: string): string | undefined {
  const memo = keptCookies.get(cookie);
  if (memo !== undefined) return memo === NO_COOKIES ? undefined : memo;
  const kept = cookie
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c && !isPortalCookieName(c.includes('=') ? c.slice(0, c.indexOf('=')) : c));
  const result = kept.length > 0 ? kept.join('; ') : undefined;
  // A browser sends the same Cookie header with each request of a session; the memo is bounded and
  // starts over when full (the header holds session ids: it is never kept anywhere else).
  if (keptCookies.size >= MAX_REMEMBERED_COOKIES) keptCookies.clear();
  keptCookies.set(cookie, result ?? NO_COOKIES);
  return result;
}
const MAX_REMEMBERED_COOKIES = 10_000;
const NO_COOKIES = '\0';
const keptCookies = new Map<string, string>();
