import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Generated child apps for the benchmark. Each is a plain ESM `index.js` exporting a Koa app, so the
 * portal loads it without compiling anything. The fixtures live in a temp folder outside the repo,
 * so they import Koa by absolute file URL (there is no node_modules next to them).
 */

export const HELLO_TIER = 'stable';
export const HELLO_NAME = 'hello';
export const HELLO_BODY = 'hello\n';
const FILLER_TIERS = ['stable', 'ea', 'devel'] as const;

export interface AppsFixture {
  /** The APPS_DIR to give the portal. */
  dir: string;
  /** How many apps it holds, the hello app included. */
  count: number;
  /** The hello app's module, which the bare-Koa and koa-session servers serve too. */
  helloModule: string;
  /** Where the portal mounts the hello app (with the trailing slash). */
  helloPath: string;
}

/** The one handler every target serves: a tiny fixed body. */
function appSource(koaUrl: string, body: string): string {
  return `import Koa from ${JSON.stringify(koaUrl)};
const app = new Koa();
app.use((ctx) => {
  ctx.type = 'text/plain';
  ctx.body = ${JSON.stringify(body)};
});
export default app;
`;
}

/**
 * Writes `<root>/<tier>/<name>/index.js` for `count` apps: `stable/hello` plus `count - 1` fillers
 * spread over the three tiers (names `app-0001` …), so the app table has `count` entries.
 */
export function writeAppsDir(root: string, count: number, koaUrl: string): AppsFixture {
  if (!Number.isInteger(count) || count < 1) throw new Error(`app count must be a whole number >= 1, got ${count}`);
  const helloDir = join(root, HELLO_TIER, HELLO_NAME);
  mkdirSync(helloDir, { recursive: true });
  const helloModule = join(helloDir, 'index.js');
  writeFileSync(helloModule, appSource(koaUrl, HELLO_BODY));
  for (let i = 1; i < count; i++) {
    const name = `app-${String(i).padStart(4, '0')}`;
    const dir = join(root, FILLER_TIERS[i % FILLER_TIERS.length] as string, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.js'), appSource(koaUrl, `${name}\n`));
  }
  return { dir: root, count, helloModule, helloPath: `/apps/${HELLO_TIER}/${HELLO_NAME}/` };
}
