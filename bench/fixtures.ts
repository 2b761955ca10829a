import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Generated child apps for the benchmark. Each in-process app is a plain ESM `index.js` exporting a
 * Koa app, so the portal loads it without compiling anything. The fixtures live in a temp folder
 * outside the repo, so they import Koa by absolute file URL (there is no node_modules next to them).
 */

export const HELLO_BODY = 'hello\n';
/** What the socket.io and websocket clients send, and expect back. */
export const ECHO_PAYLOAD = 'hello';
/** The in-process hello app, also what bare Koa serves (the very same module). */
export const HELLO_PATH = '/apps/stable/hello/';
/** The app with a realtime hook: socket.io namespace whose 'echo' handler acks what it got. */
export const REALTIME_NAMESPACE = '/apps/stable/rt';
/** The proxied app (app.json "upstream" = the bare node upstream). */
export const UPSTREAM_APP_PATH = '/apps/stable/upstream/';
/** Where the websocket echo is, below the upstream's root (through the portal: below the app's path). */
export const WS_PATH = 'ws';
const FILLER_TIERS = ['stable', 'ea', 'devel'] as const;

export interface AppsFixture {
  /** The APPS_DIR to give the portal. */
  dir: string;
  /** How many apps it holds. */
  count: number;
  /** The hello app's module, which bare Koa serves too. */
  helloModule: string;
}

/** A Koa app answering a fixed body; with `realtime`, its default export also has the echo hook. */
export function appSource(koaUrl: string, body: string, realtime = false): string {
  const app = `import Koa from ${JSON.stringify(koaUrl)};
const app = new Koa();
app.use((ctx) => {
  ctx.type = 'text/plain';
  ctx.body = ${JSON.stringify(body)};
});
`;
  if (!realtime) return `${app}export default app;\n`;
  return `${app}export default {
  app,
  realtime(namespace) {
    namespace.on('connection', (socket) => {
      socket.on('echo', (message, ack) => {
        if (typeof ack === 'function') ack(message);
      });
    });
  },
};
`;
}

/**
 * Writes `<root>/stable/hello/index.js` and, if asked, `stable/rt` (realtime) and `stable/upstream`
 * (app.json pointing at `upstream`), then fillers (`app-0001` …, spread over the three tiers) up to
 * `count` apps in all.
 */
export function writeAppsDir(root: string, count: number, koaUrl: string, extra: { realtime?: boolean; upstream?: string } = {}): AppsFixture {
  const write = (tier: string, name: string, file: string, text: string) => {
    const dir = join(root, tier, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, file), text);
    return join(dir, file);
  };
  const helloModule = write('stable', 'hello', 'index.js', appSource(koaUrl, HELLO_BODY));
  let written = 1;
  if (extra.realtime) {
    write('stable', 'rt', 'index.js', appSource(koaUrl, HELLO_BODY, true));
    written++;
  }
  if (extra.upstream) {
    write('stable', 'upstream', 'app.json', `${JSON.stringify({ title: 'Bench upstream', upstream: extra.upstream }, null, 2)}\n`);
    written++;
  }
  if (count < written) throw new Error(`app count must be at least ${written}, got ${count}`);
  for (let i = 1; written < count; i++, written++) {
    const name = `app-${String(i).padStart(4, '0')}`;
    write(FILLER_TIERS[i % FILLER_TIERS.length] as string, name, 'index.js', appSource(koaUrl, `${name}\n`));
  }
  return { dir: root, count, helloModule };
}
