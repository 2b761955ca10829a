import type Koa from 'koa';
import type { Level } from './levels.ts';

/**
 * What child apps import. An app needs none of it — a plain Koa app works as is — but these types
 * describe what the portal gives it.
 */

/** The signed-in user, as `ctx.state.user` inside every child app. */
export interface AtriumUser {
  /** The provider's stable subject identifier. */
  sub: string;
  email: string | null;
  name: string | null;
  picture: string | null;
  /** The effective level: highest of the token's scopes and the directory's groups. */
  level: Level | null;
  /** Effective directory groups, inherited ones included. */
  groups: readonly string[];
  /** The user's extra profile fields. */
  profile: Readonly<Record<string, unknown>>;
  /** Whether this session's sign-in used a second factor (the ID token's `amr`/`acr` said so). */
  mfa?: boolean;
}

/** The signed-in user's extra profile fields, for child apps (validated like the /profile page). */
export interface ProfileApi {
  get(): Promise<Record<string, unknown>>;
  /** Sets fields (an empty string or null clears one); returns the whole profile. */
  update(changes: Record<string, unknown>): Promise<Record<string, unknown>>;
}

export interface AtriumServices {
  profile: ProfileApi;
}

export interface AtriumState {
  user: AtriumUser;
  atrium: AtriumServices;
}

/** The profile API inside a child app: `await profileOf(ctx).update({ team: 'blue' })`. */
export function profileOf(ctx: { state: unknown }): ProfileApi {
  const services = (ctx.state as Partial<AtriumState>).atrium;
  if (!services) throw new Error('profileOf(ctx) works only inside an app the Atrium portal serves');
  return services.profile;
}

/** Receives the app's socket.io namespace (wired by the portal's realtime layer). */
export type RealtimeHook = (namespace: unknown) => void;

export interface AppDefinition {
  app: Koa<any, any>;
  realtime?: RealtimeHook;
  title?: string;
  description?: string;
}

/** Identity function that only adds types: `export default defineApp({ app, title })`. */
export function defineApp<T extends AppDefinition>(definition: T): T {
  return definition;
}

// --- Page layout for in-process apps: the viewport, the portal's styles and the portal bar ---

/** Where the portal serves its bar (`<atrium-bar>`), on its own origin and on every app origin alike. */
export const BAR_SCRIPT_PATH = '/.well-known/atrium/bar.js';
/** The portal's base styles for app pages (the same in both hosting modes). */
export const APP_STYLES_PATH = '/.well-known/atrium/app.css';
/** The portal's icon, so an app page never asks its app for a favicon it does not have. */
export const APP_ICON_PATH = '/.well-known/atrium/favicon.svg';

/** HTML the app built with `html`: interpolations escaped, so it may go into a page as it is. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML content and quoted attribute values. */
export function escapeHtml(text: unknown): string {
  return String(text ?? '').replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/**
 * A template tag that escapes every interpolation except the SafeHtml another `html` made (arrays
 * are joined): `html\`<p>Hello, ${user.name}</p>\``. A name holding `<script>` stays text.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  const part = (v: unknown): string => (v instanceof SafeHtml ? v.value : Array.isArray(v) ? v.map(part).join('') : escapeHtml(v));
  return new SafeHtml(strings.reduce((out, s, i) => out + s + (i < values.length ? part(values[i]) : ''), ''));
}

/**
 * A whole page for an in-process app: phone-ready (the viewport meta), light and dark, the portal's
 * styles, and the portal bar (who is signed in, back to the launcher, sign out), which works on the
 * portal's origin and on an app origin alike. The title is escaped; the body must come from `html`.
 */
export function page(options: { title: string; body: SafeHtml; lang?: string; head?: SafeHtml; bar?: boolean }): string {
  const { title, body, lang = 'en', head, bar = true } = options;
  return [
    '<!doctype html>',
    `<html lang="${escapeHtml(lang)}">`,
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="color-scheme" content="light dark">',
    `<title>${escapeHtml(title)}</title>`,
    `<link rel="icon" href="${APP_ICON_PATH}" type="image/svg+xml">`,
    `<link rel="stylesheet" href="${APP_STYLES_PATH}">`,
    bar ? `<script src="${BAR_SCRIPT_PATH}" defer></script>` : '',
    head?.value ?? '',
    '</head>',
    '<body>',
    bar ? '<atrium-bar></atrium-bar>' : '',
    `<main id="main">${body.value}</main>`,
    '</body>',
    '</html>',
  ]
    .filter((line) => line !== '')
    .join('\n');
}
