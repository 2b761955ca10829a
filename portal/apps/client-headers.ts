import type { IncomingHttpHeaders } from 'node:http';

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

/** Hop-by-hop headers (RFC 9110 §7.6.1) besides those Connection names: the client's connection's, not the upstream's. */
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'upgrade'];

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
