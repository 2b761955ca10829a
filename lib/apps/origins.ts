import { isTier, type Tier } from '../levels.ts';
import { APP_NAME } from './discovery.ts';

/**
 * App origins (APP_ORIGIN): every app on a host of its own, `{tier}-{name}.<suffix>`. Tier names
 * hold no dash, so the first dash of the first label splits tier from name. A separate origin is
 * the only boundary a browser enforces between one app's scripts and the portal (or another app):
 * same-origin policy, host-only cookies, service-worker scopes.
 */
export interface AppOriginPattern {
  /** As configured, e.g. `https://{tier}-{name}.apps.example.com`. */
  template: string;
  protocol: 'http:' | 'https:';
  /** What follows `{tier}-{name}` in the host, lowercase, with its leading dot: `.apps.example.com`. */
  hostSuffix: string;
  /** The explicit port, '' for the scheme's default. */
  port: string;
}

export const APP_ORIGIN_PLACEHOLDER = '{tier}-{name}';

/** Parses an APP_ORIGIN template; returns the problems instead of throwing, for the config report. */
export function parseAppOrigin(template: string): AppOriginPattern | string {
  if (!template.includes(APP_ORIGIN_PLACEHOLDER)) return `must contain "${APP_ORIGIN_PLACEHOLDER}" as the first label of the host, e.g. https://{tier}-{name}.apps.example.com`;
  let url: URL;
  try {
    url = new URL(template.replace(APP_ORIGIN_PLACEHOLDER, 'tier-name'));
  } catch {
    return `"${template}" is not a URL once {tier}-{name} is filled in`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `must be an http(s) URL, got "${template}"`;
  if (url.username || url.password || url.pathname !== '/' || url.search || url.hash) return `give only scheme, host and port, e.g. https://{tier}-{name}.apps.example.com; got "${template}"`;
  const host = url.hostname;
  if (!host.startsWith('tier-name.') || host.length <= 'tier-name.'.length) return `"${APP_ORIGIN_PLACEHOLDER}" must be the whole first label of the host, followed by a domain, e.g. https://{tier}-{name}.apps.example.com`;
  return { template, protocol: url.protocol, hostSuffix: host.slice('tier-name'.length), port: url.port };
}

/** The origin an app is served on, e.g. `https://ea-chat.apps.example.com`. */
export function appOrigin(pattern: AppOriginPattern, tier: string, name: string): string {
  return `${pattern.protocol}//${tier}-${name}${pattern.hostSuffix}${pattern.port ? `:${pattern.port}` : ''}`;
}

/**
 * Which app a Host header names, or undefined when it names none (the portal's host, or anything
 * else). Only the exact pattern matches: the configured port, one label before the suffix, and that
 * label exactly `<tier>-<name>` with a tier that exists and a name discovery accepts for an app
 * folder (APP_NAME): nothing else (`evil,ea-echo`, `a%40b-x`, `x@ea-echo`) is an app's host.
 */
export function appFromHost(pattern: AppOriginPattern, hostHeader: string | undefined): { tier: Tier; name: string } | undefined {
  if (!hostHeader) return undefined;
  const host = hostHeader.toLowerCase();
  const portAt = host.lastIndexOf(':');
  const hostname = portAt > host.lastIndexOf(']') && portAt >= 0 ? host.slice(0, portAt) : host;
  const port = hostname === host ? '' : host.slice(portAt + 1);
  if (port !== pattern.port && !(port === defaultPort(pattern.protocol) && pattern.port === '')) return undefined;
  if (!hostname.endsWith(pattern.hostSuffix)) return undefined;
  const label = hostname.slice(0, hostname.length - pattern.hostSuffix.length);
  const dash = label.indexOf('-');
  if (dash <= 0) return undefined;
  const tier = label.slice(0, dash);
  const name = label.slice(dash + 1);
  if (!isTier(tier) || !APP_NAME.test(name)) return undefined;
  return { tier, name };
}

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80';
}
