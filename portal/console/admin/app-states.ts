import type { AppFailure } from '../../../lib/apps/discovery.ts';
import type { MountedApp } from '../../apps/dispatch.ts';
import type { AdminDeps } from './kit.ts';
import { acceptsConnections } from './upstream-probe.ts';

/**
 * What an app folder comes to, once per folder:
 * - serving: mounted and current;
 * - stale: an edit broke it and the last good version keeps serving;
 * - closed: its app.json broke, and it is closed until that is fixed (the manifest may narrow who
 *   may open it, so the old one is not served);
 * - failed: never loaded, nothing is served.
 */
export type AppState = 'serving' | 'stale' | 'closed' | 'failed';

const STATE_LABELS: Record<AppState, string> = {
  serving: 'Serving',
  stale: 'Serving the last good version',
  closed: 'Not serving: closed until app.json is fixed',
  failed: 'Failed',
};

/**
 * What live-apps.ts appends to a failure's reason to say what became of the app. The state is
 * shown on its own, so the page strips these; the "closed" one is also how a closed app is told
 * from one that never loaded (neither is mounted).
 */
const STALE_SUFFIX = ' (the last good version is still serving)';
const CLOSED_SUFFIX = ' (the app is closed until app.json is fixed)';

export interface AppRow {
  key: string;
  title: string;
  prefix: string | undefined;
  tier: string | undefined;
  state: AppState;
  stateLabel: string;
  /** Why it is not (or not fully) current. */
  problem: string | undefined;
  kind: 'in-process' | 'upstream' | 'command';
  /** The manifest as labelled fields; empty when there is no app.json. */
  manifest: { label: string; value: string }[];
  health: Health | undefined;
}

export interface Health {
  up: boolean;
  address: string;
  /** Only for `command` apps, whose process the portal runs. */
  process?: { running: boolean; restarts: number; lastErrorLine: string | undefined };
}

/** Every app folder with its state, mounted ones first by path, then those that serve nothing. */
export async function appStates(deps: Pick<AdminDeps, 'registry' | 'supervisor'>): Promise<AppRow[]> {
  const mounted = deps.registry.table.list();
  const failures = new Map<string, AppFailure>();
  const unmountedFailures: AppFailure[] = [];
  for (const failure of deps.registry.failures()) {
    const key = failure.tier && failure.name ? `${failure.tier}/${failure.name}` : undefined;
    if (key && mounted.some((a) => a.tier === failure.tier && a.name === failure.name)) failures.set(key, failure);
    else unmountedFailures.push(failure);
  }
  const served = await Promise.all(mounted.map((app) => servedRow(app, failures.get(`${app.tier}/${app.name}`), deps.supervisor)));
  const broken = unmountedFailures.map((f): AppRow => {
    const state: AppState = f.reason.endsWith(CLOSED_SUFFIX) ? 'closed' : 'failed';
    return {
      key: f.tier && f.name ? `${f.tier}/${f.name}` : f.path,
      title: f.name ?? f.path,
      prefix: f.tier && f.name ? `/apps/${f.tier}/${f.name}` : undefined,
      tier: f.tier,
      state,
      stateLabel: STATE_LABELS[state],
      problem: stripSuffix(f.reason),
      kind: 'in-process',
      manifest: [],
      health: undefined,
    };
  });
  return [...served, ...broken.sort((a, b) => a.key.localeCompare(b.key))];
}

async function servedRow(app: MountedApp, failure: AppFailure | undefined, supervisor: AdminDeps['supervisor']): Promise<AppRow> {
  const state: AppState = failure ? 'stale' : 'serving';
  return {
    key: `${app.tier}/${app.name}`,
    title: app.title,
    prefix: app.prefix,
    tier: app.tier,
    state,
    stateLabel: STATE_LABELS[state],
    problem: failure ? stripSuffix(failure.reason) : undefined,
    kind: app.command ? 'command' : app.upstream ? 'upstream' : 'in-process',
    manifest: manifestFields(app),
    health: app.upstream ? await health(app, app.upstream, supervisor) : undefined,
  };
}

async function health(app: MountedApp, upstream: URL, supervisor: AdminDeps['supervisor']): Promise<Health> {
  const listening = await acceptsConnections(upstream);
  if (!app.command) return { up: listening, address: upstream.host };
  const running = supervisor.running(app.prefix);
  return {
    up: running && listening,
    address: upstream.host,
    process: { running, restarts: supervisor.restarts(app.prefix), lastErrorLine: supervisor.lastErrorLine(app.prefix) },
  };
}

/** The app.json as a person reads it; where the portal picked the port, the address it picked. */
function manifestFields(app: MountedApp): { label: string; value: string }[] {
  const m = app.manifest;
  const fields: { label: string; value: string }[] = [];
  if (m.title !== undefined) fields.push({ label: 'Title', value: m.title });
  if (m.description !== undefined) fields.push({ label: 'Description', value: m.description || '(empty)' });
  if (m.groups !== undefined) fields.push({ label: 'Open to', value: m.groups.length ? `members of ${m.groups.join(', ')}` : 'everyone at the tier' });
  if (m.upstream !== undefined) fields.push({ label: 'Upstream', value: app.upstream && app.upstream.href !== m.upstream ? `${m.upstream} (now ${app.upstream.href})` : m.upstream });
  if (m.command !== undefined) fields.push({ label: 'Command', value: m.command });
  return fields;
}

function stripSuffix(reason: string): string {
  for (const suffix of [STALE_SUFFIX, CLOSED_SUFFIX]) if (reason.endsWith(suffix)) return reason.slice(0, -suffix.length);
  return reason;
}
