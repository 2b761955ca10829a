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

export interface AtriumState {
  user: AtriumUser;
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
