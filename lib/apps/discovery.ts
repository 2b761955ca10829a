import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type Koa from 'koa';
import { TIERS, isTier, type Tier } from '../levels.ts';
import type { RealtimeHook } from '../app-kit.ts';
import { importAppModule } from './import-app.ts';
import { parseManifest, type Manifest } from './manifest.ts';

export interface LoadedApp {
  tier: Tier;
  name: string;
  /** `/apps/<tier>/<name>` */
  prefix: string;
  dir: string;
  title: string;
  description: string;
  /** Empty: everyone who reaches the tier. Otherwise the user must also be in one of these. */
  groups: readonly string[];
  manifest: Manifest;
  /** In-process apps: the Koa application. */
  app: Koa<any, any> | undefined;
  realtime: RealtimeHook | undefined;
  /** Apps in another process: where they listen (port 0: the portal picks one for `command`). */
  upstream: URL | undefined;
  /** The process the portal starts for the app, with PORT set. */
  command: string | undefined;
  /** Changes whenever a file of the app changes; live discovery reloads on a new value. */
  fingerprint: string;
}

export interface AppFailure {
  /** The folder (or file) that was skipped, relative to APPS_DIR. */
  path: string;
  tier?: string;
  name?: string;
  reason: string;
}

export interface Discovery {
  apps: LoadedApp[];
  failures: AppFailure[];
}

/** App folder names: they become URL segments, so lowercase letters, digits and inner dashes only. */
export const APP_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ENTRY_FILES = ['index.ts', 'index.js', 'index.mjs'];
const IMPORT_TIMEOUT_MS = 10_000;

/**
 * Finds every `APPS_DIR/<tier>/<name>` app. A folder that cannot be used is reported in `failures`
 * with a reason a person can act on; it never stops the others from loading.
 */
/** Returns the already-loaded app when its folder has not changed, so it is not imported again. */
export type ReuseLoaded = (prefix: string, fingerprint: string) => LoadedApp | undefined;

export async function discoverApps(appsDir: string, reuse?: ReuseLoaded): Promise<Discovery> {
  const root = resolve(appsDir);
  const apps: LoadedApp[] = [];
  const failures: AppFailure[] = [];
  if (!existsSync(root)) return { apps, failures };

  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (!entry.isDirectory() || !isTier(entry.name)) {
      failures.push({ path: entry.name, reason: `not a tier: apps live in ${TIERS.map((t) => `${t}/`).join(', ')}` });
    }
  }

  for (const tier of TIERS) {
    const tierDir = join(root, tier);
    if (!existsSync(tierDir)) continue;
    const entries = await readdir(tierDir, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    const loaded = await Promise.all(
      entries
        .filter((e) => !e.name.startsWith('.'))
        .map((e) => loadApp(tier, e.name, join(tierDir, e.name), e.isDirectory(), reuse)),
    );
    for (const result of loaded) {
      if ('reason' in result) failures.push(result);
      else apps.push(result);
    }
  }
  return { apps, failures };
}

export async function loadApp(tier: Tier, name: string, dir: string, isDirectory = true, reuse?: ReuseLoaded): Promise<LoadedApp | AppFailure> {
  const fail = (reason: string): AppFailure => ({ path: `${tier}/${name}`, tier, name, reason });
  if (!isDirectory) return fail('not a folder: an app is a folder with index.ts or index.js');
  if (!APP_NAME.test(name)) {
    return fail('bad folder name: use lowercase letters, digits and dashes (it becomes part of the URL)');
  }
  const fingerprint = await folderFingerprint(dir);
  const unchanged = reuse?.(`/apps/${tier}/${name}`, fingerprint);
  if (unchanged) return unchanged;

  let manifest: Manifest = {};
  const manifestPath = join(dir, 'app.json');
  if (existsSync(manifestPath)) {
    try {
      manifest = parseManifest(await readFile(manifestPath, 'utf8'));
    } catch (err) {
      return fail((err as Error).message);
    }
  }
  const entry = ENTRY_FILES.map((f) => join(dir, f)).find((f) => existsSync(f));
  const base = {
    tier,
    name,
    prefix: `/apps/${tier}/${name}`,
    dir,
    groups: Object.freeze([...(manifest.groups ?? [])]),
    manifest,
    fingerprint,
  };
  if (manifest.upstream) {
    if (entry) return fail(`both app.json "upstream" and ${basename(entry)}: an app is either proxied or in-process, not both`);
    return {
      ...base,
      title: manifest.title ?? titleCase(name),
      description: manifest.description ?? '',
      app: undefined,
      realtime: undefined,
      upstream: new URL(manifest.upstream),
      command: manifest.command,
    };
  }
  if (!entry) return fail(`no ${ENTRY_FILES.join(' or ')} in the folder (or an app.json with "upstream")`);

  let exported: unknown;
  try {
    // The folder's fingerprint in the URL makes a changed app a new module, not a cached one.
    const url = `${pathToFileURL(entry).href}?t=${fingerprint}`;
    const module = (await withTimeout(importAppModule(url), IMPORT_TIMEOUT_MS)) as { default?: unknown };
    exported = module.default;
  } catch (err) {
    return fail(`the module failed to load: ${stripAnsi((err as Error)?.message ?? String(err))}`);
  }

  const definition = toDefinition(exported);
  if (typeof definition === 'string') return fail(definition);
  return {
    ...base,
    title: manifest.title ?? definition.title ?? titleCase(name),
    description: manifest.description ?? definition.description ?? '',
    app: definition.app,
    realtime: definition.realtime,
    upstream: undefined,
    command: undefined,
  };
}

const FINGERPRINT_MAX_FILES = 500;
const SKIPPED_FOLDERS = new Set(['node_modules', '.git', '__pycache__', '.venv']);

/**
 * Sizes and modification times of the app's files (bounded, dependencies skipped), hashed: cheap to
 * recompute every few seconds, and different after any edit, addition or removal.
 */
export async function folderFingerprint(dir: string): Promise<string> {
  const hash = createHash('sha1');
  let files = 0;
  const walk = async (folder: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      if (files >= FINGERPRINT_MAX_FILES) return;
      const full = join(folder, entry.name);
      if (entry.isDirectory()) {
        if (!SKIPPED_FOLDERS.has(entry.name) && !entry.name.startsWith('.')) await walk(full);
      } else if (entry.isFile()) {
        files += 1;
        try {
          const info = await stat(full);
          hash.update(`${full}\0${info.size}\0${info.mtimeMs}\n`);
        } catch {
          // removed while we looked: the next scan sees the new state
        }
      }
    }
  };
  await walk(dir);
  return hash.digest('hex').slice(0, 16);
}

function isKoaApp(value: unknown): value is Koa {
  return (
    typeof value === 'object' &&
    value !== null &&
    Array.isArray((value as Koa).middleware) &&
    typeof (value as Koa).callback === 'function'
  );
}

/** Accepts a Koa app or `{ app, realtime?, title?, description? }`; otherwise says what is wrong. */
function toDefinition(exported: unknown): { app: Koa; realtime?: RealtimeHook; title?: string; description?: string } | string {
  if (isKoaApp(exported)) return { app: exported };
  if (typeof exported === 'object' && exported !== null && 'app' in exported) {
    const def = exported as Record<string, unknown>;
    if (!isKoaApp(def.app)) return 'the default export\'s "app" is not a Koa application';
    if (def.realtime !== undefined && typeof def.realtime !== 'function') return '"realtime" must be a function';
    if (def.title !== undefined && typeof def.title !== 'string') return '"title" must be a string';
    if (def.description !== undefined && typeof def.description !== 'string') return '"description" must be a string';
    return {
      app: def.app,
      realtime: def.realtime as RealtimeHook | undefined,
      title: def.title as string | undefined,
      description: def.description as string | undefined,
    };
  }
  return 'the default export must be a Koa application or { app, realtime?, title?, description? }';
}

/** Compilers colour their messages; a log line or a web page wants plain text. */
function stripAnsi(text: string): string {
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
}

function titleCase(name: string): string {
  return name.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it did not finish loading within ${ms / 1000} s`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
