/**
 * Summarises a V8 .cpuprofile (from `BENCH_PROFILE=1 npm run bench`): self time by function and by
 * file/package, so "where does a portal request go" has an answer without opening DevTools.
 * Usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [top=30] [--busy] [--skip <s>] [--inclusive] [--callers <fn>]
 *   --busy       percentages of the busy time (idle, (program) and the profiler's own left out)
 *   --skip <s>   leave out the first s seconds of the profile (the start-up, before the load)
 * Under `npm run bench` with BENCH_PROFILE=1, each portal target writes its own profiles to
 * bench/results/profiles/<portal-target>/ (the largest file is the main thread's).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const argv = process.argv.slice(2);
const [file, topArg] = argv;
if (!file) throw new Error('usage: tsx bench/profile-summary.ts <file.cpuprofile> [top] [--busy] [--skip <s>] [--inclusive] [--callers <fn>]');
const top = Number(topArg && !topArg.startsWith('--') ? topArg : 30);
const busyOnly = argv.includes('--busy');
const skipIndex = argv.indexOf('--skip');
const skipUs = skipIndex >= 0 ? Number(argv[skipIndex + 1] ?? 0) * 1e6 : 0;
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const NOT_BUSY = new Set(['(idle)', '(program)']);
const selfUs = new Map<number, number>();
let elapsedUs = 0;
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0;
  elapsedUs += delta;
  if (elapsedUs < skipUs) return;
  if (busyOnly && NOT_BUSY.has(byId.get(id)?.callFrame.functionName ?? '')) return;
  selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
});
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

function where(url: string): string {
  if (!url) return '(native/V8)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\/.*?\/(lib|portal|tests|bench|scripts|apps)\//, '$1/');
}

const fn = new Map<string, number>();
const pkg = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id);
  if (!node) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const key = `${functionName || '(anonymous)'}  ${where(url)}:${lineNumber + 1}`;
  fn.set(key, (fn.get(key) ?? 0) + us);
  const p = where(url);
  pkg.set(p, (pkg.get(p) ?? 0) + us);
}

const show = (title: string, map: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  }
};
console.log(`total sampled: ${(total / 1000).toFixed(0)} ms${busyOnly ? ' busy' : ''}${skipUs ? ` after the first ${skipUs / 1e6} s` : ''} (profile ${(elapsedUs / 1e6).toFixed(0)} s long)`);
show('self time by package / file', pkg);
show('self time by function', fn);

// Optional: `--callers <functionName>`: the call stacks (outermost first, trimmed) that lead to it.
const callersIndex = process.argv.indexOf('--callers');
if (callersIndex >= 0) {
  const wantedName = process.argv[callersIndex + 1] ?? '';
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stacks = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const chain: string[] = [];
    let cur: number | undefined = id;
    let hit = false;
    while (cur !== undefined) {
      const node = byId.get(cur);
      if (!node) break;
      if (node.callFrame.functionName === wantedName) hit = true;
      if (hit) chain.push(`${node.callFrame.functionName || '(anon)'}@${where(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`);
      cur = parent.get(cur);
    }
    if (!hit) continue;
    const key = chain.slice(0, 12).join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + us);
  }
  console.log(`\ninclusive stacks through ${wantedName}`);
  for (const [k, us] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
}

// Optional: `--inclusive`: time spent in each function including what it called (recursion counted once).
if (process.argv.includes('--inclusive')) {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    let cur: number | undefined = id;
    while (cur !== undefined) {
      const node = byId.get(cur);
      if (!node) break;
      const key = `${node.callFrame.functionName || '(anonymous)'}  ${where(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
      if (!seen.has(key)) {
        seen.add(key);
        inclusive.set(key, (inclusive.get(key) ?? 0) + us);
      }
      cur = parent.get(cur);
    }
  }
  show('inclusive time by function', inclusive);
}
