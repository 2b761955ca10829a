import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/** Debian's nginx (.ci/run installs it when missing). Tests run their own instance, never the system's. */
export const NGINX = process.env.TEST_NGINX ?? '/usr/sbin/nginx';

/** The deployment's nginx site, the very file operators install. */
export const ATRIUM_CONF = fileURLToPath(new URL('../../deploy/nginx/atrium.conf', import.meta.url));

const PLACEHOLDER = /\$\{(ATRIUM_[A-Z0-9_]+)\}/g;

/** The `${ATRIUM_*}` placeholders a template names, each once. */
export function placeholdersOf(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1] as string))];
}

/**
 * The templating step deploy/nginx/atrium.conf documents, as `envsubst '${ATRIUM_…} …'` does it:
 * each `${ATRIUM_*}` placeholder is replaced by its value, and nothing else is touched (nginx's own
 * `$variables`). A placeholder without a value is an error, not an empty string.
 */
export function renderTemplate(template: string, values: Record<string, string>): string {
  const missing = placeholdersOf(template).filter((name) => !(name in values));
  if (missing.length > 0) throw new Error(`no value for ${missing.join(', ')}`);
  return template.replace(PLACEHOLDER, (_, name: string) => values[name] as string);
}

export interface Certificate {
  cert: string;
  key: string;
}

/** A throwaway self-signed certificate (a day long) for 127.0.0.1 and the given DNS names. */
export function makeSelfSignedCertificate(dir: string, dnsNames: string[] = []): Certificate {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const san = ['IP:127.0.0.1', ...dnsNames.map((n) => `DNS:${n}`)].join(',');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', `subjectAltName=${san}`, '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  chmodSync(key, 0o600);
  return { cert, key };
}

export interface NginxSite {
  /** nginx's prefix (-p): the rendered site, the main file, logs, temp files and the pid file. */
  dir: string;
  /** The main configuration (-c), standing in for /etc/nginx/nginx.conf: it includes the site. */
  mainConf: string;
  /** deploy/nginx/atrium.conf as rendered for this test. */
  siteConf: string;
  /** The values the placeholders were given. */
  values: Record<string, string>;
  certificate: Certificate;
  errorLog: string;
  /** Removes the folder (after nginx has stopped). */
  remove(): void;
}

export interface SiteOptions {
  httpsPort: number;
  httpPort: number;
  /** `host:port` of each portal instance. */
  upstreams: string[];
  serverName?: string;
  appsServerName?: string;
  /** Extra DNS names for the certificate. */
  dnsNames?: string[];
}

/**
 * Renders deploy/nginx/atrium.conf for a test: its placeholders get loopback ports, a fresh
 * self-signed certificate and an upstream file listing the test's instances. Beside it goes the main
 * file every nginx needs (worker processes, events, an http block that includes the site) with the
 * logs and temp paths in the test's folder, so nothing of the system nginx is used.
 */
export function writeNginxSite(options: SiteOptions): NginxSite {
  const dir = mkdtempSync(join(tmpdir(), 'atrium-nginx-'));
  // Workers run as nobody when the master is root: they must reach their temp folders. The key
  // stays 0600 (the master reads it).
  chmodSync(dir, 0o755);
  const certificate = makeSelfSignedCertificate(dir, options.dnsNames);
  const upstreamFile = join(dir, 'upstreams.conf');
  writeFileSync(upstreamFile, options.upstreams.map((u) => `server ${u};\n`).join(''));
  const values: Record<string, string> = {
    ATRIUM_SERVER_NAME: options.serverName ?? '127.0.0.1',
    ATRIUM_APPS_SERVER_NAME: options.appsServerName ?? '',
    ATRIUM_LISTEN_HTTPS: `127.0.0.1:${options.httpsPort}`,
    ATRIUM_LISTEN_HTTP: `127.0.0.1:${options.httpPort}`,
    ATRIUM_TLS_CERTIFICATE: certificate.cert,
    ATRIUM_TLS_CERTIFICATE_KEY: certificate.key,
    ATRIUM_UPSTREAM_SERVERS: upstreamFile,
  };
  const siteConf = join(dir, 'atrium.conf');
  writeFileSync(siteConf, renderTemplate(readFileSync(ATRIUM_CONF, 'utf8'), values));
  const temp = join(dir, 'temp');
  mkdirSync(temp, { mode: 0o755 });
  const errorLog = join(dir, 'error.log');
  const mainConf = join(dir, 'nginx.conf');
  writeFileSync(
    mainConf,
    `worker_processes 2;
error_log ${errorLog} warn;
events { worker_connections 1024; }
http {
    access_log ${join(dir, 'access.log')};
    client_body_temp_path ${join(temp, 'body')};
    proxy_temp_path ${join(temp, 'proxy')};
    fastcgi_temp_path ${join(temp, 'fastcgi')};
    uwsgi_temp_path ${join(temp, 'uwsgi')};
    scgi_temp_path ${join(temp, 'scgi')};
    include ${siteConf};
}
`,
  );
  return { dir, mainConf, siteConf, values, certificate, errorLog, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** nginx's arguments for a site: its own prefix, main file, error log and pid file. */
function nginxArgs(site: NginxSite, extra: string[], directives: string): string[] {
  return ['-p', site.dir, '-c', site.mainConf, '-e', site.errorLog, '-g', `${directives} pid ${join(site.dir, 'nginx.pid')};`, ...extra];
}

/** `nginx -t` on the site: resolves with nginx's output when it accepts the configuration, else rejects with it. */
export async function testNginxConfig(site: NginxSite): Promise<string> {
  try {
    const { stderr } = await promisify(execFile)(NGINX, nginxArgs(site, ['-t'], ''), { timeout: 30_000 });
    return stderr;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`nginx -t refused the configuration:\n${e.stderr ?? e.message}`);
  }
}

export interface RunningNginx {
  child: ChildProcess;
  /** Graceful stop (SIGQUIT), then SIGKILL if it lingers; waits for the exit. */
  stop(): Promise<void>;
}

const READY_DEADLINE_MS = 20_000;
const STOP_DEADLINE_MS = 15_000;

/** Starts nginx in the foreground as this process's child; resolves once it accepts connections on `port`. */
export async function startNginx(site: NginxSite, port: number): Promise<RunningNginx> {
  const child = spawn(NGINX, nginxArgs(site, [], 'daemon off;'), { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = once(child, 'exit');
  const deadline = Date.now() + READY_DEADLINE_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = (() => {
        try {
          return readFileSync(site.errorLog, 'utf8');
        } catch {
          return '';
        }
      })();
      throw new Error(`nginx exited (${child.exitCode ?? child.signalCode}) before it listened:\n${output}\n${log}`);
    }
    if (await accepts(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not listen on ${port} in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
