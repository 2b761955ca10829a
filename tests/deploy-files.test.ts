import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../lib/config.ts';
import { freePort } from '../lib/free-port.ts';
import { ATRIUM_CONF, placeholdersOf, renderTemplate, testNginxConfig, writeNginxSite, type NginxSite } from './helpers/nginx.ts';

/**
 * The deployment files (deploy/): no container runtime or cluster here, so what can be checked
 * without one is checked: every YAML file parses, every variable they give the portal is one
 * lib/config.ts reads, the image's and the unit's start command is package.json's start:prod, the
 * timings agree with the portal's (drain, stop, keep-alive), and nginx accepts its site
 * (tests/multi-instance.test.ts runs that site for real).
 */
const ROOT = new URL('..', import.meta.url).pathname;
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string) => readFileSync(join(DEPLOY, path), 'utf8');

/** Every file under deploy/, relative to it. */
function deployFiles(dir = DEPLOY): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? deployFiles(join(dir, entry.name)) : [relative(DEPLOY, join(dir, entry.name))]));
}

/** The variables lib/config.ts reads: loadConfig asks the environment for each, and we listen. */
function configVariables(): Set<string> {
  const asked = new Set<string>();
  loadConfig(
    new Proxy({} as NodeJS.ProcessEnv, {
      get(_target, name) {
        if (typeof name === 'string') asked.add(name);
        return undefined;
      },
    }),
  );
  return asked;
}
const KNOWN = configVariables();
/** Node's own, which the deploy files may set for the portal's process. */
const NODE_VARIABLES = new Set(['NODE_EXTRA_CA_CERTS']);

/** package.json's start:prod as variables and a command line: `NODE_ENV=production node dist/portal/main.js`. */
function startProd(): { env: Record<string, string>; argv: string[] } {
  const script = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start:prod'] as string;
  const words = script.trim().split(/\s+/);
  const env: Record<string, string> = {};
  while (words[0] && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) {
    const [name, ...value] = (words.shift() as string).split('=');
    env[name as string] = value.join('=');
  }
  return { env, argv: words };
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped: [keyword, rest][]. */
function dockerInstructions(text: string): [string, string][] {
  const joined = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const space = line.indexOf(' ');
      return [line.slice(0, space).toUpperCase(), line.slice(space + 1).trim()];
    });
}

/** `ENV A=1 B=2` → { A: '1', B: '2' } (values without spaces, as ours are). */
function envOf(rest: string): Record<string, string> {
  return Object.fromEntries(rest.split(/\s+/).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

/** A systemd unit's keys by section; a key may repeat (Environment=). */
function unitOf(text: string): Map<string, [string, string][]> {
  const sections = new Map<string, [string, string][]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = section[1] as string;
      sections.set(current, []);
      continue;
    }
    const eq = line.indexOf('=');
    sections.get(current)?.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return sections;
}
const unitValue = (unit: Map<string, [string, string][]>, section: string, key: string) => unit.get(section)?.filter(([k]) => k === key).map(([, v]) => v) ?? [];

/** `NAME=value` lines of an environment file. */
function envFile(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

type Doc = Record<string, any>;

/** Parses a YAML file (every document in it), failing on any error or warning. */
function yamlDocs(path: string): Doc[] {
  const docs = parseAllDocuments(read(path), { merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) {
    expect(doc.errors.map(String), path).toEqual([]);
    expect(doc.warnings.map(String), path).toEqual([]);
  }
  return list.map((doc) => doc.toJS() as Doc).filter((doc) => doc !== null);
}

const kube = (file: string, kind: string): Doc => {
  const doc = yamlDocs(join('kubernetes', file)).find((d) => d.kind === kind);
  if (!doc) throw new Error(`no ${kind} in kubernetes/${file}`);
  return doc;
};

const seconds = (value: string) => Number(/^(\d+)s?$/.exec(value.trim())?.[1] ?? NaN);

let site: NginxSite | undefined;
afterAll(() => site?.remove());

describe('deploy/', () => {
  it('has every file the operator’s guide names', () => {
    const files = deployFiles();
    for (const expected of [
      'nginx/atrium.conf',
      'nginx/atrium-upstreams.conf',
      'systemd/atrium.service',
      'systemd/atrium.env.example',
      'Dockerfile',
      'docker-compose.yml',
      'kubernetes/deployment.yaml',
      'kubernetes/service.yaml',
      'kubernetes/ingress.yaml',
      'kubernetes/configmap.yaml',
      'kubernetes/secret.yaml',
      'kubernetes/poddisruptionbudget.yaml',
    ])
      expect(files).toContain(expected);
  });

  it('every YAML file parses, without errors or warnings', () => {
    const yamlFiles = deployFiles().filter((f) => /\.ya?ml$/.test(f));
    expect(yamlFiles.length).toBeGreaterThanOrEqual(8);
    for (const file of yamlFiles) expect(yamlDocs(file).length, file).toBeGreaterThan(0);
  });

  it('every variable the deploy files give the portal is one lib/config.ts reads', () => {
    expect(KNOWN).toContain('DATABASE_URL'); // not vacuous: the schema was read
    const named = new Map<string, string[]>();
    const note = (where: string, names: Iterable<string>) => {
      for (const name of names) named.set(name, [...(named.get(name) ?? []), where]);
    };
    note('Dockerfile ENV', dockerInstructions(read('Dockerfile')).flatMap(([k, rest]) => (k === 'ENV' ? Object.keys(envOf(rest)) : [])));
    const unit = unitOf(read('systemd/atrium.service'));
    note('atrium.service Environment=', unitValue(unit, 'Service', 'Environment').map((v) => v.slice(0, v.indexOf('='))));
    note('atrium.env.example', Object.keys(envFile(read('systemd/atrium.env.example'))));
    const compose = yamlDocs('docker-compose.yml')[0] as Doc;
    for (const name of portalServices(compose)) note(`compose ${name}`, Object.keys(compose.services[name].environment ?? {}));
    note('ConfigMap', Object.keys(kube('configmap.yaml', 'ConfigMap').data));
    note('Secret', Object.keys(kube('secret.yaml', 'Secret').stringData));
    for (const container of kube('deployment.yaml', 'Deployment').spec.template.spec.containers) note('Deployment env', (container.env ?? []).map((e: Doc) => e.name));
    // Commented-out settings are settings too (`# APP_ORIGIN: …` in the ConfigMap).
    note('ConfigMap comments', [...read('kubernetes/configmap.yaml').matchAll(/^\s*#\s*([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1] as string));

    expect(named.size).toBeGreaterThan(10);
    const unknown = [...named].filter(([name]) => !KNOWN.has(name) && !NODE_VARIABLES.has(name));
    expect(unknown).toEqual([]);
  });

  it('the image and the unit start the portal as package.json’s start:prod does', () => {
    const { env, argv } = startProd();
    expect(argv).toEqual(['node', 'dist/portal/main.js']);
    expect(env).toEqual({ NODE_ENV: 'production' });

    const instructions = dockerInstructions(read('Dockerfile'));
    const finalStage = instructions.slice(instructions.map(([k]) => k).lastIndexOf('FROM'));
    expect(JSON.parse(finalStage.filter(([k]) => k === 'CMD').at(-1)?.[1] ?? 'null')).toEqual(argv);
    expect(finalStage.filter(([k]) => k === 'ENTRYPOINT')).toEqual([]);
    const imageEnv = Object.assign({}, ...finalStage.filter(([k]) => k === 'ENV').map(([, rest]) => envOf(rest)));
    expect(imageEnv).toMatchObject(env);

    const unit = unitOf(read('systemd/atrium.service'));
    const [exec] = unitValue(unit, 'Service', 'ExecStart');
    expect(exec).toBe(`/usr/bin/${argv.join(' ')}`);
    for (const [name, value] of Object.entries(env)) expect(unitValue(unit, 'Service', 'Environment')).toContain(`${name}=${value}`);

    // Nobody overrides the image's command.
    const compose = yamlDocs('docker-compose.yml')[0] as Doc;
    for (const name of portalServices(compose)) {
      expect(compose.services[name].command, name).toBeUndefined();
      expect(compose.services[name].entrypoint, name).toBeUndefined();
    }
    for (const container of kube('deployment.yaml', 'Deployment').spec.template.spec.containers) {
      expect(container.command).toBeUndefined();
      expect(container.args).toBeUndefined();
    }
  });

  it('Dockerfile: builds with dev dependencies, runs with production ones only, on Node 22, as a non-root user, with a health check', () => {
    const instructions = dockerInstructions(read('Dockerfile'));
    const froms = instructions.filter(([k]) => k === 'FROM').map(([, rest]) => rest);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(from).toMatch(/^node:22[-.]/);
    const finalStart = instructions.map(([k]) => k).lastIndexOf('FROM');
    const build = instructions.slice(0, finalStart).map(([, rest]) => rest);
    const final = instructions.slice(finalStart);
    expect(build).toContain('npm ci');
    expect(build.some((r) => /npm run build/.test(r) && /npm prune --omit=dev/.test(r))).toBe(true);
    // The final stage installs no npm packages of its own: it copies the pruned node_modules.
    expect(final.filter(([k, rest]) => k === 'RUN' && /\bnpm\b/.test(rest))).toEqual([]);
    expect(final.some(([k, rest]) => k === 'COPY' && /node_modules/.test(rest))).toBe(true);
    const user = final.filter(([k]) => k === 'USER').at(-1)?.[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    const health = final.find(([k]) => k === 'HEALTHCHECK')?.[1] ?? '';
    expect(health).toMatch(/\/healthz/);
    expect(final.find(([k]) => k === 'STOPSIGNAL')?.[1]).toBe('SIGTERM');
    expect(read('Dockerfile')).toMatch(/NOT BUILT OR RUN HERE/);
  });

  it('systemd: a non-root user, an EnvironmentFile, SIGTERM and a stop timeout above drain + stop, restart on failure, hardening', async () => {
    const unit = unitOf(read('systemd/atrium.service'));
    const one = (key: string) => unitValue(unit, 'Service', key)[0];
    expect(one('User')).toBeDefined();
    expect(['root', '0']).not.toContain(one('User'));
    expect(one('EnvironmentFile')).toMatch(/^-?\//);
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('Restart')).toBe('on-failure');
    const config = loadConfig({ ...envFile(read('systemd/atrium.env.example')), NODE_ENV: 'test', SESSION_SECRET: 'x'.repeat(32) });
    // The portal's stop: drain, requests in flight, then its command apps (5 s at most).
    expect(seconds(one('TimeoutStopSec') as string)).toBeGreaterThan(config.stopDrainDelaySeconds + config.stopTimeoutSeconds + 5);
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
    ])
      expect(one(key as string), key).toBe(value);
    expect(unitValue(unit, 'Install', 'WantedBy')).toEqual(['multi-user.target']);
  });

  it.skipIf(!existsSync('/usr/bin/systemd-analyze'))('systemd-analyze verify accepts the unit without a warning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrium-unit-'));
    try {
      copyFileSync(join(DEPLOY, 'systemd/atrium.service'), join(dir, 'atrium.service'));
      const { stdout, stderr } = await promisify(execFile)('/usr/bin/systemd-analyze', ['verify', join(dir, 'atrium.service')], { timeout: 30_000 });
      expect(`${stdout}${stderr}`.trim()).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('compose: two portals from the Dockerfile, MariaDB, a persisting Redis, and nginx with deploy/nginx/atrium.conf and every placeholder', () => {
    const compose = yamlDocs('docker-compose.yml')[0] as Doc;
    const portals = portalServices(compose);
    expect(portals.length).toBeGreaterThanOrEqual(2);
    for (const name of portals) {
      expect(compose.services[name].environment).toMatchObject({ DATABASE_URL: expect.stringMatching(/^mysql:\/\//), REDIS_URL: expect.stringMatching(/^redis:\/\//) });
      expect(seconds(compose.services[name].stop_grace_period)).toBeGreaterThan(Number(compose.services[name].environment.STOP_DRAIN_DELAY ?? 0) + Number(compose.services[name].environment.STOP_TIMEOUT ?? 10) + 5);
    }
    expect(compose.services.mariadb.image).toMatch(/^mariadb:/);
    expect(compose.services.redis.command.join(' ')).toMatch(/--appendonly yes/);
    const nginx = compose.services.nginx;
    expect(nginx.volumes).toContain('./nginx/atrium.conf:/etc/nginx/templates/atrium.conf.template:ro');
    const placeholders = placeholdersOf(readFileSync(ATRIUM_CONF, 'utf8'));
    expect(Object.keys(nginx.environment).filter((k) => k.startsWith('ATRIUM_')).sort()).toEqual([...placeholders].sort());
    // The upstream file nginx gets names the portal services, on the image's PORT.
    const upstreamMount = (nginx.volumes as string[]).find((v) => v.endsWith(`:${nginx.environment.ATRIUM_UPSTREAM_SERVERS}:ro`)) as string;
    const upstreams = read(join('nginx', basename(upstreamMount.split(':')[0] as string)));
    expect([...upstreams.matchAll(/^server ([\w.-]+):(\d+);/gm)].map((m) => `${m[1]}:${m[2]}`).sort()).toEqual(portals.map((p) => `${p}:3000`).sort());
  });

  it('Kubernetes: probes, a preStop sleep and a grace period above it plus drain and stop, the names agree, ingress-nginx is sticky and keeps websockets', () => {
    const deployment = kube('deployment.yaml', 'Deployment');
    const config = kube('configmap.yaml', 'ConfigMap');
    const secret = kube('secret.yaml', 'Secret');
    const service = kube('service.yaml', 'Service');
    const ingress = kube('ingress.yaml', 'Ingress');
    const pdb = kube('poddisruptionbudget.yaml', 'PodDisruptionBudget');
    const pod = deployment.spec.template;
    const [container] = pod.spec.containers;
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    const preStop = container.lifecycle.preStop.exec.command as string[];
    expect(preStop[0]).toBe('sleep');
    const portal = loadConfig({ ...config.data, NODE_ENV: 'test', SESSION_SECRET: 'x'.repeat(32) });
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(Number(preStop[1]) + portal.stopDrainDelaySeconds + portal.stopTimeoutSeconds + 5);
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);

    expect(container.envFrom).toEqual([{ configMapRef: { name: config.metadata.name } }, { secretRef: { name: secret.metadata.name } }]);
    for (const key of ['SESSION_SECRET', 'DATABASE_URL', 'REDIS_URL']) expect(Object.keys(secret.stringData)).toContain(key);
    // The portal refuses to start with the placeholder secret, rather than run with a published one.
    expect(() => loadConfig({ SESSION_SECRET: secret.stringData.SESSION_SECRET })).toThrow(/SESSION_SECRET/);

    const labels = pod.metadata.labels as Record<string, string>;
    expect(deployment.spec.selector.matchLabels).toEqual(expect.objectContaining(service.spec.selector));
    for (const [k, v] of Object.entries(service.spec.selector as Record<string, string>)) expect(labels[k]).toBe(v);
    for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels as Record<string, string>)) expect(labels[k]).toBe(v);
    const containerPorts = (container.ports as Doc[]).map((p) => p.name);
    for (const port of service.spec.ports as Doc[]) expect(containerPorts).toContain(port.targetPort);

    const annotations = ingress.metadata.annotations as Record<string, string>;
    expect(annotations['nginx.ingress.kubernetes.io/affinity']).toBe('cookie');
    expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBe(portal.keepAliveSeconds);
    expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBe(portal.keepAliveSeconds);
    for (const rule of ingress.spec.rules as Doc[]) {
      for (const path of rule.http.paths as Doc[]) {
        expect(path.backend.service.name).toBe(service.metadata.name);
        expect((service.spec.ports as Doc[]).map((p) => p.name)).toContain(path.backend.service.port.name);
      }
    }
    expect(ingress.spec.tls[0].hosts).toContain(new URL(portal.publicUrl).hostname);

    const kustomization = yamlDocs('kubernetes/kustomization.yaml')[0] as Doc;
    const manifests = deployFiles().filter((f) => f.startsWith('kubernetes/') && f.endsWith('.yaml') && !f.endsWith('kustomization.yaml'));
    expect([...kustomization.resources].sort()).toEqual(manifests.map((f) => basename(f)).sort());
  });

  it('nginx: only ${ATRIUM_*} placeholders, each documented; timeouts agree with the portal’s; `nginx -t` accepts the rendered site', async () => {
    const template = readFileSync(ATRIUM_CONF, 'utf8');
    const placeholders = placeholdersOf(template);
    expect(placeholders.length).toBeGreaterThanOrEqual(6);
    const envsubstLine = /envsubst '([^']+)'/s.exec(template)?.[1] ?? '';
    for (const name of placeholders) {
      expect(template, name).toMatch(new RegExp(`^#\\s+${name}\\s`, 'm'));
      expect(envsubstLine, name).toContain(`\${${name}}`);
    }
    // A placeholder spelt without braces would be missed by the renderer but not by envsubst.
    expect(template.match(/\$ATRIUM_/g)).toBeNull();
    expect(() => renderTemplate(template, {})).toThrow(/no value for/);

    const [httpsPort, httpPort] = [await freePort(), await freePort()];
    site = writeNginxSite({ httpsPort, httpPort, upstreams: ['127.0.0.1:3001', '127.0.0.1:3002'], serverName: 'atrium.localhost', appsServerName: '*.apps.localhost', dnsNames: ['atrium.localhost', '*.apps.localhost'] });
    const rendered = readFileSync(site.siteConf, 'utf8');
    expect(rendered).not.toMatch(/\$\{ATRIUM_[A-Z0-9_]+\}/);
    expect(rendered).toMatch(/server_name atrium\.localhost \*\.apps\.localhost;/);

    const keepAlive = loadConfig({}).keepAliveSeconds;
    // Upstream blocks' idle timeout below the portal's: nginx closes first, never reusing a closing connection.
    const upstreamBlocks = [...rendered.matchAll(/^upstream \w+ \{([^}]*)\}/gm)].map((m) => m[1] as string);
    expect(upstreamBlocks.length).toBe(2);
    for (const block of upstreamBlocks) expect(seconds(/keepalive_timeout (\d+s)/.exec(block)?.[1] ?? '')).toBeLessThan(keepAlive);
    expect(seconds(/proxy_read_timeout (\d+s);/.exec(rendered)?.[1] ?? '')).toBe(keepAlive);
    expect(seconds(/proxy_send_timeout (\d+s);/.exec(rendered)?.[1] ?? '')).toBe(keepAlive);
    expect(rendered).toMatch(/map \$http_upgrade \$connection_upgrade/);
    expect(rendered).toMatch(/location \/socket\.io\/ \{\s*proxy_pass http:\/\/atrium_socketio;/);
    expect(/upstream atrium_socketio \{[^}]*hash \$atrium_route consistent;/.test(rendered)).toBe(true);

    expect(await testNginxConfig(site)).toMatch(/test is successful/);
  });
});

/** The compose services that run the portal: those built from deploy/Dockerfile. */
function portalServices(compose: Doc): string[] {
  return Object.entries(compose.services as Record<string, Doc>)
    .filter(([, service]) => service.build?.dockerfile === 'deploy/Dockerfile')
    .map(([name]) => name);
}
