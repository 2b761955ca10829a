/**
 * The report: the table and ratios on stdout, and bench/results/latest.json with every run and the
 * machine and commit they were measured on.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { HOST, keepTemp, profile, RESULTS_DIR, ROOT, settings, type Run, type Target, type TargetId } from './settings.ts';
import { cleanRuns, CONTENDED_BELOW_PERCENT, isClean, median } from './stats.ts';

/** Prints the table, writes latest.json; returns the targets whose answers under load were wrong. */
export function report(started: Date, targets: Target[], temp: string): TargetId[] {
  const byId = new Map(targets.map((t) => [t.id, t]));
  /** The runs a figure is taken from: the clean ones, or all when none was clean. */
  const counted = (id: TargetId): Run[] => {
    const runs = byId.get(id)?.runs ?? [];
    const clean = cleanRuns(runs);
    return clean.length > 0 ? clean : runs;
  };
  const hasClean = (id: TargetId) => cleanRuns(byId.get(id)?.runs ?? []).length > 0;
  const med = (id: TargetId) => {
    const runs = counted(id);
    return runs.length > 0 ? median(runs.map((r) => r.rps)) : undefined;
  };
  const medAll = (id: TargetId) => {
    const runs = byId.get(id)?.runs ?? [];
    return runs.length > 0 ? median(runs.map((r) => r.rps)) : undefined;
  };
  /** Clean against clean; if either side has no clean run, all runs against all runs (and flagged). */
  const reliable = (a: TargetId, b: TargetId) => hasClean(a) && hasClean(b);
  const ratio = (a: TargetId, b: TargetId) => {
    const x = reliable(a, b) ? med(a) : medAll(a);
    const y = reliable(a, b) ? med(b) : medAll(b);
    return x !== undefined && y !== undefined && y > 0 ? Math.round((x / y) * 1000) / 1000 : undefined;
  };
  const cpuMedian = (id: TargetId) => {
    const values = counted(id).map((r) => r.serverCpuUsPerRequest).filter((v): v is number => v !== null);
    return values.length > 0 ? median(values) : undefined;
  };
  /** Throughput a CPU-bound server would reach, compared: the inverse ratio of CPU time per request. */
  const cpuRatio = (a: TargetId, b: TargetId) => {
    const x = cpuMedian(a);
    const y = cpuMedian(b);
    return x !== undefined && y !== undefined && x > 0 ? Math.round((y / x) * 1000) / 1000 : undefined;
  };
  /** The same ratio within each round (the two ran minutes apart at most): its spread shows the noise. */
  const perRound = (a: TargetId, b: TargetId) => {
    const x = byId.get(a)?.runs ?? [];
    const y = byId.get(b)?.runs ?? [];
    return x.flatMap((run) => {
      const other = y.find((r) => r.round === run.round);
      return other && other.rps > 0 && isClean(run) && isClean(other) ? [Math.round((run.rps / other.rps) * 1000) / 1000] : [];
    });
  };
  const ratios = [
    { id: 'portal10/bare', label: 'portal (10 apps) / bare Koa', value: ratio('portal10', 'bare'), perRound: perRound('portal10', 'bare'), target: 0.6 },
    { id: 'portal1000/portal10', label: 'portal 1000 apps / 10 apps', value: ratio('portal1000', 'portal10'), perRound: perRound('portal1000', 'portal10'), target: 0.9 },
    { id: 'session/bare', label: 'Koa + koa-session / bare Koa', value: ratio('session', 'bare'), perRound: perRound('session', 'bare'), target: undefined },
    { id: 'cpu:portal10/bare', label: 'same, by server CPU/req: portal/bare', value: cpuRatio('portal10', 'bare'), perRound: [] as number[], target: undefined },
    { id: 'cpu:portal1000/portal10', label: 'by server CPU/req: 1000/10 apps', value: cpuRatio('portal1000', 'portal10'), perRound: [] as number[], target: undefined },
    { id: 'cpu:session/bare', label: 'by server CPU/req: koa-session/bare', value: cpuRatio('session', 'bare'), perRound: [] as number[], target: undefined },
  ].map((r) => {
    const [a, b] = r.id.replace(/^cpu:/, '').split('/') as [TargetId, TargetId];
    return { ...r, reliable: reliable(a, b), pass: r.value === undefined || r.target === undefined ? undefined : r.value >= r.target };
  });
  const invalid = targets.filter((t) => t.runs.some((r) => r.non2xx + r.errors + r.timeouts > 0)).map((t) => t.id);

  const lines: string[] = [];
  lines.push('');
  lines.push(`${'target'.padEnd(34)} ${'req/s'.padStart(8)}  ${'runs (req/s, * contended)'.padEnd(36)} ${'p50 ms'.padStart(6)} ${'p99 ms'.padStart(6)} ${'CPU µs/req'.padStart(10)} ${'RSS idle'.padStart(9)} ${'RSS load'.padStart(9)}`);
  for (const t of targets) {
    const m = med(t.id) ?? 0;
    const runs = t.runs.map((r) => `${r.rps.toFixed(0)}${isClean(r) ? '' : '*'}`).join(' ');
    const p50 = median(counted(t.id).map((r) => r.latencyP50Ms));
    const p99 = median(counted(t.id).map((r) => r.latencyP99Ms));
    const mb = (v: number | null) => (v === null ? '-' : `${v.toFixed(0)} MB`);
    const cpu = cpuMedian(t.id);
    lines.push(`${t.label.padEnd(34)} ${m.toFixed(0).padStart(8)}  ${runs.padEnd(36)} ${String(p50).padStart(6)} ${String(p99).padStart(6)} ${(cpu === undefined ? '-' : cpu.toFixed(0)).padStart(10)} ${mb(t.rssIdleMB).padStart(9)} ${mb(t.rssAfterLoadMB).padStart(9)}`);
  }
  lines.push('');
  lines.push(`${'ratio'.padEnd(34)} ${'value'.padStart(8)}  ${'target'.padEnd(8)} result`);
  for (const r of ratios) {
    const value = r.value === undefined ? '-' : r.value.toFixed(3);
    const target = r.target === undefined ? '(context)' : `>= ${r.target.toFixed(2)}`;
    const verdict = r.pass === undefined ? (r.target === undefined ? '' : 'not measured') : r.pass ? 'PASS' : 'FAIL';
    const result = r.value !== undefined && !r.reliable && !r.id.startsWith('cpu:') ? `${verdict}${verdict ? ' ' : ''}(unreliable: no clean run)` : verdict;
    const rounds = r.perRound.length > 1 ? `   (per round: ${Math.min(...r.perRound).toFixed(2)}–${Math.max(...r.perRound).toFixed(2)})` : '';
    lines.push(`${r.label.padEnd(34)} ${value.padStart(8)}  ${target.padEnd(9)} ${result.padEnd(4)}${rounds}`);
  }
  const p10 = byId.get('portal10');
  const p1000 = byId.get('portal1000');
  if (p10 && p1000) {
    lines.push('');
    lines.push(`start-up to /healthz: 10 apps ${(p10.startupMs / 1000).toFixed(1)} s, 1000 apps ${(p1000.startupMs / 1000).toFixed(1)} s`);
  }
  const contended = targets.flatMap((t) => t.runs.filter((r) => r.serverCpuPercent !== null && r.serverCpuPercent < CONTENDED_BELOW_PERCENT));
  const allRuns = targets.reduce((n, t) => n + t.runs.length, 0);
  if (contended.length > 0) {
    lines.push(
      `note: * marks ${contended.length} of ${allRuns} runs in which the server had less than ${CONTENDED_BELOW_PERCENT}% of a core although it was the bottleneck` +
        ' (another process held the CPU); figures and ratios come from the other runs where a target has any.',
    );
    const noneClean = targets.filter((t) => cleanRuns(t.runs).length === 0).map((t) => t.id);
    if (noneClean.length > 0) lines.push(`!! no clean run at all for ${noneClean.join(', ')}: their figures use contended runs and are not reliable`);
  }
  if (invalid.length > 0) lines.push(`!! INVALID: ${invalid.join(', ')} answered with non-2xx responses, errors or timeouts during load; see latest.json`);
  console.log(lines.join('\n'));

  const json = {
    date: started.toISOString(),
    commit: gitDescription(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMB: Math.round(totalmem() / 2 ** 20), node: process.version, platform: `${process.platform} ${process.arch}` },
    settings: { ...settings, host: HOST, loadGenerator: 'autocannon 8 (programmatic, in the bench process)' },
    contendedRuns: contended.length,
    targets: Object.fromEntries(
      targets.map((t) => [
        t.id,
        {
          label: t.label,
          url: t.url.replace(/:\d+\//, ':<port>/'),
          apps: t.apps,
          medianRps: med(t.id),
          medianServerCpuUsPerRequest: cpuMedian(t.id),
          runs: t.runs,
          /** The rounds the figures come from (clean runs; all of them when none was clean). */
          countedRounds: counted(t.id).map((r) => r.round),
          startupMs: t.startupMs,
          rssIdleMB: t.rssIdleMB,
          rssAfterLoadMB: t.rssAfterLoadMB,
        },
      ]),
    ),
    ratios,
    invalid,
    profiles: profile ? join(RESULTS_DIR, 'profiles') : undefined,
    tempDir: keepTemp ? temp : undefined,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwritten: ${join(RESULTS_DIR, 'latest.json')}`);
  return invalid;
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
