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
