import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const KOA = fileURLToPath(new URL('../../node_modules/koa/dist/koa.mjs', import.meta.url));

/** A Koa app module (plain JS, so it loads anywhere) that answers with its name and the user. */
export function koaAppSource(name: string): string {
  return `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { app: ${JSON.stringify(name)}, path: ctx.path, user: ctx.state.user?.email ?? null }; });
export default app;
`;
}

/** Writes files under a fresh temporary APPS_DIR: { 'stable/hello/index.js': '…' }. */
export function makeAppsDir(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'atrium-apps-'));
  writeFiles(root, files);
  return root;
}

export function writeFiles(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, content);
  }
}
