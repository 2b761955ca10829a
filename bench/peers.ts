/**
 * The peers the portal is compared with, each our own instance in a child process pinned to the
 * server core, in front of the same bare-node upstream:
 *
 *   nginx  Debian's /usr/sbin/nginx with its own prefix, configuration and pid file in a temp folder
 *          (`-p <dir> -c <dir>/nginx.conf -e <dir>/error.log -g 'daemon off; pid <dir>/nginx.pid;'`),
 *          never the system's: one worker (one core), access log off, upstream keep-alive, and a
 *          websocket location (`/ws`) proxied with the usual Upgrade/Connection headers.
 *   CHP    JupyterHub's configurable-http-proxy (devDependency), its CLI with `--default-target`.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../lib/free-port.ts';
import { childEnv, freePorts, spawnPinned, waitReady, type Child } from './processes.ts';
import { HOST, NGINX, ROOT, settings } from './settings.ts';

export function nginxProblem(): string | undefined {
  if (!existsSync(NGINX)) return `${NGINX} is missing: install it with \`apt-get install -y nginx\` (or point BENCH_NGINX at an nginx binary)`;
  return undefined;
}

/** The nginx.conf the benchmark runs: a plain reverse proxy, as an operator would write one. */
export function nginxConf(dir: string, port: number, upstreamPort: number): string {
  const temp = join(dir, 'temp');
  return `# Written by the Atrium benchmark (bench/peers.ts): a reverse proxy in front of the bare-node upstream.
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path ${join(temp, 'body')};
    proxy_temp_path ${join(temp, 'proxy')};
    fastcgi_temp_path ${join(temp, 'fastcgi')};
    uwsgi_temp_path ${join(temp, 'uwsgi')};
    scgi_temp_path ${join(temp, 'scgi')};
    # Node keeps a connection open for any number of requests; so does nginx here (default 1000).
    keepalive_requests 1000000;
    keepalive_timeout 90s;

    upstream bench_upstream {
        server ${HOST}:${upstreamPort};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen ${HOST}:${port};
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
        location /ws {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
        }
    }
}
`;
}

export async function startNginx(temp: string, upstreamPort: number): Promise<{ server: Child; origin: string; startupMs: number; dir: string }> {
  const dir = join(temp, 'nginx');
  mkdirSync(join(dir, 'temp'), { recursive: true });
  // The workers run as nobody when the master is root: they must reach their temp folders.
  chmodSync(temp, 0o755);
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'temp'), 0o755);
  const port = await freePort(HOST);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConf(dir, port, upstreamPort));
  const started = Date.now();
  const server = spawnPinned('nginx', settings.serverCore, NGINX, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', `daemon off; pid ${join(dir, 'nginx.pid')};`], childEnv({}));
  const origin = `http://${HOST}:${port}`;
  const startupMs = await waitReady(`${origin}/`, server, started);
  return { server, origin, startupMs, dir };
}

export async function startChp(upstreamOrigin: string): Promise<{ server: Child; origin: string; startupMs: number }> {
  const [port, apiPort] = (await freePorts(2)) as [number, number];
  const cli = join(ROOT, 'node_modules', 'configurable-http-proxy', 'bin', 'configurable-http-proxy');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm install (configurable-http-proxy is a devDependency)`);
  const started = Date.now();
  const server = spawnPinned(
    'configurable-http-proxy',
    settings.serverCore,
    process.execPath,
    [cli, '--ip', HOST, '--port', String(port), '--api-ip', HOST, '--api-port', String(apiPort), '--default-target', upstreamOrigin, '--log-level', 'error'],
    // Without a token CHP makes one up and says so; the API is not used here.
    childEnv({ CONFIGPROXY_AUTH_TOKEN: randomBytes(24).toString('hex') }),
  );
  const origin = `http://${HOST}:${port}`;
  const startupMs = await waitReady(`${origin}/`, server, started);
  return { server, origin, startupMs };
}
