/**
 * The report: the table, the ratios against the issue's goals and the start-up figures on stdout;
 * bench/results/latest.json with every run and the machine and commit they were measured on; and
 * bench/results/latest.md, the same tables in Markdown for BENCHMARKS.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { HOST, keepTemp, NGINX, portalFromBuild, profile, RATIOS, RESULTS_DIR, ROOT, settings, STARTUP_GOALS, WRK, type RatioSpec, type Run, type TargetId } from './settings.ts';
import type { StartupResult } from './startup.ts';
import { pairedRatio } from './pairing.ts';
import { CONTENDED_BELOW_PERCENT, countedRuns, GENERATOR_BOUND_PERCENT, isClean, medianOf, MIN_CLEAN_RUNS } from './stats.ts';
import type { Target } from './targets.ts';

export interface Failure {
  part: string;
  reason: string;
  /** Reported, but not the benchmark's failure (the build of a working tree mid-edit): exit code unchanged. */
  soft?: boolean;
}

interface RatioResult extends RatioSpec {
  value: number | undefined;
  byCpu: number | undefined;
  perRound: number[];
  /** The value is the median of the per-round ratios (pairing.ts), not the ratio of the two medians. */
  paired: boolean;
  reliable: boolean;
  /** What the verdict was taken on: the rate ratio, or (no clean run on one side) the CPU-time ratio. */
  basis: 'rate' | 'cpu';
  verdict: string;
}

const fmt = (v: number | undefined | null, digits = 0) => (v === undefined || v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const thousands = (v: number | undefined) => (v === undefined ? '-' : Math.round(v).toLocaleString('en-US').replace(/,/g, ' '));

/** Prints and writes everything; returns the targets whose answers under load were wrong. */
export function report(input: { started: Date; targets: Target[]; startup: StartupResult[]; failures: Failure[]; temp: string }): TargetId[] {
  const { started, targets, startup, failures, temp } = input;
  const byId = new Map(targets.map((t) => [t.id, t]));
  const counted = (id: TargetId) => countedRuns(byId.get(id)?.runs ?? []);
  const hasClean = (id: TargetId) => (byId.get(id)?.runs ?? []).some(isClean);
  const rate = (id: TargetId) => medianOf(counted(id), (r) => r.rate);

  // Clean against clean; when either side has no clean run, every run against every run (flagged),
  // never one side's quiet moment against the other's busy ones.
  const ratios: RatioResult[] = RATIOS.map((spec) => {
    const ra = byId.get(spec.a)?.runs ?? [];
    const rb = byId.get(spec.b)?.runs ?? [];
    const reliable = hasClean(spec.a) && hasClean(spec.b);
    const pick = (runs: Run[]) => (reliable ? runs.filter(isClean) : runs);
    const a = medianOf(pick(ra), (r) => r.rate);
    const b = medianOf(pick(rb), (r) => r.rate);
    const ca = medianOf(pick(ra), coreUsOf);
    const cb = medianOf(pick(rb), coreUsOf);
    // The rounds both sides ran in (counted runs only, when both have clean ones): seconds apart (pairing.ts).
    const pairs = ra.flatMap((run) => {
      const other = rb.find((r) => r.round === run.round);
      return other && (!reliable || (isClean(run) && isClean(other))) ? [[run, other] as const] : [];
    });
    const perRound = pairs.flatMap(([x, y]) => (y.rate > 0 ? [round3(x.rate / y.rate)] : []));
    const perRoundCpu = pairs.flatMap(([x, y]) => {
      const [cx, cy] = [coreUsOf(x), coreUsOf(y)];
      return cx !== null && cy !== null && cx > 0 ? [round3(cy / cx)] : [];
    });
    const byRate = pairedRatio(perRound, a !== undefined && b !== undefined && b > 0 ? round3(a / b) : undefined, MIN_CLEAN_RUNS);
    const value = byRate.value;
    const byCpu = pairedRatio(perRoundCpu, ca !== undefined && cb !== undefined && ca > 0 ? round3(cb / ca) : undefined, MIN_CLEAN_RUNS).value;
    // The verdict is on the rates when both sides had clean runs; otherwise the rates compare runs
    // squeezed by other processes by different amounts, and CPU time per operation decides.
    const basis: 'rate' | 'cpu' = reliable || byCpu === undefined || spec.min === undefined ? 'rate' : 'cpu';
    return { ...spec, value, paired: byRate.paired, byCpu, perRound, reliable, basis, verdict: verdictOf(basis === 'rate' ? value : byCpu, spec.min, spec.stretch) };
  });
  const invalid = targets.filter((t) => t.runs.some((r) => r.bad + r.errors > 0)).map((t) => t.id);

  const lines: string[] = [''];
  if (targets.length > 0) lines.push(
    `${'target'.padEnd(34)} ${'rate'.padStart(8)} ${'unit'.padEnd(7)} ${'runs (* contended, G generator-bound)'.padEnd(44)} ${'p50/p99 ms'.padStart(12)} ${'srv µs'.padStart(6)} ${'+upstr'.padStart(6)} ${'core%'.padStart(5)} ${'gen%'.padStart(4)}  RSS idle→load`,
  );
  for (const t of targets) {
    const runs = counted(t.id);
    const marks = t.runs.map((r) => `${fmt(r.rate)}${r.state === 'clean' ? '' : r.state === 'contended' ? '*' : 'G'}`).join(' ');
    const p = `${fmt(medianOf(runs, (r) => r.p50Ms), 2)}/${fmt(medianOf(runs, (r) => r.p99Ms), 1)}`;
    lines.push(
      `${t.spec.label.padEnd(34)} ${fmt(rate(t.id)).padStart(8)} ${t.unit.padEnd(7)} ${marks.padEnd(44)} ${p.padStart(12)} ${fmt(medianOf(runs, (r) => r.serverUsPerOp)).padStart(6)} ${(t.upstream ? fmt(medianOf(runs, (r) => r.upstreamUsPerOp)) : '').padStart(6)} ${fmt(medianOf(runs, (r) => r.coreBusyPercent)).padStart(5)} ${fmt(medianOf(runs, (r) => r.generatorPercent)).padStart(4)}  ${fmt(t.rssIdleMB)} → ${fmt(t.rssAfterLoadMB)} MB`,
    );
  }
  const conns = targets.filter((t) => t.upstream && t.spec.generator === 'wrk');
  if (conns.length > 0) {
    lines.push('');
    lines.push(`new upstream connections per request: ${conns.map((t) => `${t.id} ${fmt(medianOf(t.runs, (r) => r.upstreamConnectionsPerOp), 3)}`).join(', ')}`);
  }
  const shown = ratios.filter((r) => r.value !== undefined || (r.min !== undefined && (byId.has(r.a) || byId.has(r.b))));
  if (shown.length > 0) lines.push('', `ratios: medians of the per-round ratios (a goal's two sides run back to back); "of medians" where fewer than ${MIN_CLEAN_RUNS} rounds had both sides counted`);
  if (shown.length > 0) lines.push(`${'ratio'.padEnd(34)} ${'rate'.padStart(6)}  ${'per round'.padEnd(11)} ${'by CPU'.padStart(6)}  ${'goal'.padEnd(10)} result`);
  for (const r of shown) {
    const rounds = r.perRound.length > 1 ? `${Math.min(...r.perRound).toFixed(2)}–${Math.max(...r.perRound).toFixed(2)}` : '';
    const goal = r.min === undefined ? '(context)' : `>= ${r.min}${r.stretch ? ` (${r.stretch})` : ''}`;
    const caveat = (r.value !== undefined && !r.paired ? ' (of medians)' : '') + (r.value !== undefined && !r.reliable ? (r.basis === 'cpu' ? ' by CPU/op (no clean run on one side)' : ' (no clean run on one side: all runs compared)') : '');
    lines.push(`${r.label.padEnd(34)} ${fmt(r.value, 3).padStart(6)}  ${rounds.padEnd(11)} ${fmt(r.byCpu, 3).padStart(6)}  ${goal.padEnd(10)} ${r.verdict}${caveat}`);
  }
  for (const s of startup) {
    const how = MODE[s.mode];
    lines.push('');
    lines.push(
      `start-up ${how}, ${s.many.apps} in-process apps: spawn to first 200 ${fmt(s.many.firstRequestMedianMs / 1000, 2)} s (median; runs ${s.many.firstRequestMs.map((ms) => (ms / 1000).toFixed(2)).join(', ')}), goal <= ${STARTUP_GOALS.firstRequestSeconds} s: ${verdictMax(s.many.firstRequestMedianMs / 1000, STARTUP_GOALS.firstRequestSeconds)}`,
    );
    lines.push(`  ${s.base.apps} apps: ${fmt(s.base.firstRequestMedianMs / 1000, 2)} s (runs ${s.base.firstRequestMs.map((ms) => (ms / 1000).toFixed(2)).join(', ')}); cold first start to /healthz: ${fmt(s.base.coldToHealthzMs / 1000, 2)} s with ${s.base.apps} apps, ${fmt(s.many.coldToHealthzMs / 1000, 2)} s with ${s.many.apps}`);
    lines.push(
      `  new app folder served after ${s.newFolderMedianMs === undefined ? '-' : (s.newFolderMedianMs / 1000).toFixed(2)} s (median; max ${s.newFolderMaxMs === undefined ? '-' : (s.newFolderMaxMs / 1000).toFixed(2)} s; runs ${s.newFolderMs.map((ms) => (ms / 1000).toFixed(2)).join(', ')}), goal <= ${STARTUP_GOALS.newFolderSeconds} s: ${s.newFolderMedianMs === undefined ? 'not measured' : verdictMax(s.newFolderMedianMs / 1000, STARTUP_GOALS.newFolderSeconds)}`,
    );
    lines.push(`  memory per mounted app: ${memoryLine(s)}`);
  }
  const allRuns = targets.flatMap((t) => t.runs);
  const contended = allRuns.filter((r) => r.state === 'contended').length;
  const generatorBound = allRuns.filter((r) => r.state === 'generator-bound').length;
  if (contended + generatorBound > 0) {
    lines.push('');
    lines.push(
      `note: ${contended} of ${allRuns.length} runs contended (*: the server and its upstream kept their core less than ${CONTENDED_BELOW_PERCENT}% busy: another process held that core, or the generator's), ` +
        `${generatorBound} generator-bound (G: the load generator was at ${GENERATOR_BOUND_PERCENT}%+ of its core); figures come from the other runs where a target has any.`,
    );
    const noneClean = targets.filter((t) => t.runs.length > 0 && !t.runs.some(isClean)).map((t) => t.id);
    if (noneClean.length > 0) lines.push(`!! no clean run at all for ${noneClean.join(', ')}: their figures use every run and are not reliable`);
  }
  for (const f of failures) lines.push(`!! NOT RUN: ${f.part}: ${f.reason}${f.soft ? ' (not counted as the benchmark failing)' : ''}`);
  for (const t of targets) {
    const wrong = t.runs.find((r) => r.bad + r.errors > 0);
    if (wrong) lines.push(`!! INVALID: ${t.id} answered wrongly under load (round ${wrong.round}: ${wrong.bad} wrong answers, ${wrong.errors} errors; first: ${wrong.firstProblem ?? '?'})`);
  }
  console.log(lines.join('\n'));

  const commit = gitDescription();
  const json = {
    date: started.toISOString(),
    commit,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMB: Math.round(totalmem() / 2 ** 20), node: process.version, platform: `${process.platform} ${process.arch}` },
    settings: {
      ...settings,
      host: HOST,
      httpGenerator: `${WRK} -t1 -c${settings.connections} --latency (bench/wrk/check.lua), taskset -c ${settings.loadCore}`,
      socketGenerator: `bench/clients/socket-load.ts, ${settings.connections} clients, taskset -c ${settings.loadCore}`,
      servers: `taskset -c ${settings.serverCore}, upstream included`,
      portal: portalFromBuild ? 'the production build, plain node (npm run start:prod)' : 'the sources through tsx (npm start)',
      nginx: NGINX,
      contendedBelowPercent: CONTENDED_BELOW_PERCENT,
      generatorBoundPercent: GENERATOR_BOUND_PERCENT,
    },
    targets: Object.fromEntries(
      targets.map((t) => [
        t.id,
        {
          label: t.spec.label,
          unit: t.unit,
          server: t.spec.server,
          viaUpstream: Boolean(t.upstream),
          url: t.url.replace(/:\d+\//, ':<port>/'),
          medianRate: rate(t.id),
          medianServerUsPerOp: medianOf(counted(t.id), (r) => r.serverUsPerOp),
          medianServerSystemUsPerOp: medianOf(counted(t.id), (r) => r.serverSystemUsPerOp),
          medianUpstreamUsPerOp: medianOf(counted(t.id), (r) => r.upstreamUsPerOp),
          medianP50Ms: medianOf(counted(t.id), (r) => r.p50Ms),
          medianP99Ms: medianOf(counted(t.id), (r) => r.p99Ms),
          countedRounds: counted(t.id).map((r) => r.round),
          serverStartupMs: t.server.startupMs,
          rssIdleMB: t.rssIdleMB,
          rssAfterLoadMB: t.rssAfterLoadMB,
          runs: t.runs,
        },
      ]),
    ),
    ratios,
    startup,
    failures,
    invalid,
    profiles: profile ? join(RESULTS_DIR, 'profiles') : undefined,
    tempDir: keepTemp ? temp : undefined,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, 'latest.md'), markdown({ started, commit, targets, ratios, startup, counted, rate }));
  console.log(`\nwritten: ${join(RESULTS_DIR, 'latest.json')} and latest.md`);
  return invalid;
}

/** RSS delta per app after start-up, and after a full GC (RSS and heap), with the figures behind them. */
function memoryLine(s: StartupResult): string {
  const kb = (mb: number | null | undefined) => (mb === null || mb === undefined ? '-' : `${Math.round(mb * 1024)} KB`);
  const raw = `${kb(s.perAppMB)} by RSS (median RSS ${fmt(s.many.rssMedianMB)} MB with ${s.many.apps} apps, ${fmt(s.base.rssMedianMB)} MB with ${s.base.apps})`;
  if (!s.perAppAfterGcMB || !s.many.afterGc || !s.base.afterGc) return raw;
  return `${raw}; after a full GC ${kb(s.perAppAfterGcMB.rss)} by RSS, ${kb(s.perAppAfterGcMB.heapUsed)} of V8 heap (heap ${fmt(s.many.afterGc.heapUsedMB)} / ${fmt(s.base.afterGc.heapUsedMB)} MB)`;
}

/** CPU time per operation on the server core: the server's and, for a proxy, the upstream's. */
function coreUsOf(r: Run): number | null {
  return r.serverUsPerOp === null ? null : r.serverUsPerOp + (r.upstreamUsPerOp ?? 0);
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

function verdictOf(value: number | undefined, min: number | undefined, stretch: number | undefined): string {
  if (min === undefined) return '';
  if (value === undefined) return 'not measured';
  if (value < min) return `MISSED (${Math.round((1 - value / min) * 100)}% short)`;
  if (stretch !== undefined) return value >= stretch ? 'PASS (stretch too)' : `PASS (stretch ${stretch} MISSED)`;
  return 'PASS';
}

const MODE: Record<StartupResult['mode'], string> = { source: 'from the sources (tsx)', build: 'from the build (plain node)' };

function bold(verdict: string): string {
  return verdict.startsWith('MISSED') ? `**${verdict}**` : verdict;
}

function verdictMax(value: number, max: number): string {
  return value <= max ? 'PASS' : `MISSED (${Math.round((value / max - 1) * 100)}% over)`;
}

function markdown(m: {
  started: Date;
  commit: string;
  targets: Target[];
  ratios: RatioResult[];
  startup: StartupResult[];
  counted: (id: TargetId) => Run[];
  rate: (id: TargetId) => number | undefined;
}): string {
  const out: string[] = [];
  out.push(`${m.started.toISOString().slice(0, 16).replace('T', ' ')} UTC, commit \`${m.commit}\`, ${settings.rounds} x ${settings.durationSeconds} s, ${settings.connections} connections/clients, portal ${portalFromBuild ? 'from the build' : 'from the sources'}`);
  out.push('');
  out.push('| target | rate (median) | server CPU µs/op (+ upstream) | p50 / p99 ms | RSS idle → after load | runs counted |');
  out.push('|---|---:|---:|---|---|---|');
  for (const t of m.targets) {
    const runs = m.counted(t.id);
    const srv = medianOf(runs, (r) => r.serverUsPerOp);
    const up = t.upstream ? medianOf(runs, (r) => r.upstreamUsPerOp) : undefined;
    const counted = `${t.runs.filter(isClean).length} of ${t.runs.length}${t.runs.some(isClean) ? '' : ' (none clean: all used)'}`;
    out.push(
      `| ${t.spec.label} | ${thousands(m.rate(t.id))} ${t.unit} | ${fmt(srv)}${t.upstream ? ` (+ ${fmt(up)})` : ''} | ${fmt(medianOf(runs, (r) => r.p50Ms), 1)} / ${fmt(medianOf(runs, (r) => r.p99Ms), 1)} | ${fmt(t.rssIdleMB)} → ${fmt(t.rssAfterLoadMB)} MB | ${counted} |`,
    );
  }
  out.push('');
  out.push('| ratio | by rate (median of rounds) | per round | by CPU/op | goal | result |');
  out.push('|---|---:|---|---:|---|---|');
  for (const r of m.ratios) {
    if (r.value === undefined) continue;
    const rounds = r.perRound.length > 1 ? `${Math.min(...r.perRound).toFixed(2)}–${Math.max(...r.perRound).toFixed(2)}` : '';
    const goal = r.min === undefined ? 'context' : `≥ ${r.min}${r.stretch ? ` (stretch ${r.stretch})` : ''}`;
    const result = `${bold(r.verdict)}${r.paired ? '' : ' (of medians)'}${r.reliable ? '' : r.basis === 'cpu' ? ' by CPU/op (no clean run on one side)' : ' (all runs: no clean run on one side)'}`;
    out.push(`| ${r.label} | ${fmt(r.value, 2)} | ${rounds} | ${fmt(r.byCpu, 2)} | ${goal} | ${result} |`);
  }
  if (m.startup.length > 0) {
    out.push('');
    out.push('| start-up | figure | goal | result |');
    out.push('|---|---|---|---|');
    for (const s of m.startup) {
      const how = MODE[s.mode];
      out.push(`| ${how}: ${s.many.apps} in-process apps, spawn to first 200 | ${(s.many.firstRequestMedianMs / 1000).toFixed(2)} s (runs ${s.many.firstRequestMs.map((v) => (v / 1000).toFixed(2)).join(', ')}) | ≤ ${STARTUP_GOALS.firstRequestSeconds} s | ${bold(verdictMax(s.many.firstRequestMedianMs / 1000, STARTUP_GOALS.firstRequestSeconds))} |`);
      out.push(`| ${how}: ${s.base.apps} apps, spawn to first 200 | ${(s.base.firstRequestMedianMs / 1000).toFixed(2)} s | context | |`);
      if (s.newFolderMedianMs !== undefined) {
        out.push(`| ${how}: new app folder to first 200 | ${(s.newFolderMedianMs / 1000).toFixed(2)} s (max ${((s.newFolderMaxMs ?? 0) / 1000).toFixed(2)} s) | ≤ ${STARTUP_GOALS.newFolderSeconds} s | ${bold(verdictMax(s.newFolderMedianMs / 1000, STARTUP_GOALS.newFolderSeconds))} |`);
      }
      out.push(`| ${how}: memory per mounted app | ${memoryLine(s)} | context | |`);
    }
  }
  out.push('');
  return out.join('\n');
}

function gitDescription(): string {
  try {
    const git = (args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git(['rev-parse', '--short', 'HEAD']);
    const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
    return dirty ? `${commit} (with uncommitted changes)` : commit;
  } catch {
    return 'unknown';
  }
}
