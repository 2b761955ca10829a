/**
 * The production build for the start-up figures: what `npm run build` does (tsc with
 * tsconfig.build.json, then the asset copy), into bench/results/build/ rather than dist/ (inside the
 * project, so the output resolves node_modules as dist/ does; git-ignored with bench/results/).
 * The portal then starts as `npm run start:prod` starts it: plain node, no TypeScript loader.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RESULTS_DIR, ROOT } from './settings.ts';

export const BUILD_DIR = join(RESULTS_DIR, 'build');

/** Builds the working tree; resolves with the entry module, rejects with the compiler's output. */
export async function buildPortal(): Promise<string> {
  rmSync(BUILD_DIR, { recursive: true, force: true });
  const run = promisify(execFile);
  try {
    await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', BUILD_DIR], { cwd: ROOT, timeout: 600_000 });
    await run(process.execPath, ['--import', 'tsx', 'scripts/copy-build-assets.ts', BUILD_DIR], { cwd: ROOT, timeout: 120_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`the build failed: ${`${e.stdout ?? ''}${e.stderr ?? ''}`.trim().slice(0, 2000) || e.message}`);
  }
  return join(BUILD_DIR, 'portal', 'main.js');
}

export function removeBuild(): void {
  rmSync(BUILD_DIR, { recursive: true, force: true });
}
