/**
 * Request headers a client may not pass on to an upstream app. An app behind Atrium may once have
 * sat behind another auth proxy, or be a product that trusts one (Grafana's auth proxy, Jenkins,
 * anything reading Remote-User): a header naming a user, a group, a client address or a rewritten
 * URL is believed only when a proxy set it, so a client's copy never gets through. The portal
 * then sets its own X-Forwarded-For, -Host, -Proto and -Prefix, and the X-Atrium-* identity.
 */
const PREFIXES = [
  'x-atrium-', // the portal's own identity headers
  'x-forwarded-', // -user, -email, -groups, -preferred-username, -access-token (oauth2-proxy), and any the portal does not set
  'x-auth-request-', // oauth2-proxy's auth_request headers
  'remote-', // Authelia: Remote-User, -Groups, -Email, -Name
  'x-remote-',
  'x-webauth-', // Grafana's auth proxy default
  'x-authentik-',
  'x-pomerium-',
  'cf-access-', // Cloudflare Access
  'x-goog-authenticated-', // Google IAP
  'x-goog-iap-',
  'x-amzn-oidc-', // AWS ALB
  'x-ms-client-principal', // Azure App Service
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
