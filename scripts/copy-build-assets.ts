import { cpSync, statSync } from 'node:fs';

/**
 * The second half of `npm run build`: tsc compiles portal/ to dist/portal/ (or another folder, the
 * first argument), and this copies what the compiled code reads beside itself at run time
 * (templates, the portal's CSS and scripts).
 */
const outDir = process.argv[2] ?? 'dist';
cpSync('portal', `${outDir}/portal`, {
  recursive: true,
  filter: (source) => statSync(source).isDirectory() || !/\.(ts|md)$/.test(source),
});
