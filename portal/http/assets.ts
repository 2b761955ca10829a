import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Koa from 'koa';

/** URL path → the file under this folder and its type. */
const FILES: Record<string, { file: string; type: string }> = {
  '/assets/atrium.css': { file: './assets/atrium.css', type: 'text/css; charset=utf-8' },
  '/assets/handoff.js': { file: './assets/handoff.js', type: 'text/javascript; charset=utf-8' },
  '/assets/launcher.js': { file: './assets/launcher.js', type: 'text/javascript; charset=utf-8' },
  '/assets/passkey.js': { file: './assets/passkey.js', type: 'text/javascript; charset=utf-8' },
  '/assets/favicon.svg': { file: './assets/favicon.svg', type: 'image/svg+xml' },
  // The portal bar and the base styles for app pages: under /.well-known/atrium/, which is the
  // portal's on its own origin and on every app origin (app-host.ts serves these there too).
  '/.well-known/atrium/bar.js': { file: './assets/atrium-bar.js', type: 'text/javascript; charset=utf-8' },
  '/.well-known/atrium/app.css': { file: './assets/atrium.css', type: 'text/css; charset=utf-8' },
  '/.well-known/atrium/favicon.svg': { file: './assets/favicon.svg', type: 'image/svg+xml' },
  // Browsers ask for /favicon.ico whatever a page links (and for pages without a <head>, such as
  // JSON): the same icon, so no request for it ever ends in a 404.
  '/favicon.ico': { file: './assets/favicon.svg', type: 'image/svg+xml' },
};

/** The portal's own static files, read once into memory and served with an ETag. */
export function assets(): Koa.Middleware {
  const served = new Map(
    Object.entries(FILES).map(([path, { file, type }]) => {
      const body = readFileSync(fileURLToPath(new URL(file, import.meta.url)));
      return [path, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"` }];
    }),
  );
  return async (ctx, next) => {
    const file = served.get(ctx.path);
    if (!file || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.set('ETag', file.etag);
    ctx.set('Cache-Control', 'public, max-age=3600');
    if (ctx.get('If-None-Match') === file.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = file.type;
    ctx.body = file.body;
  };
}
