import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type Koa from 'koa';

const FILES: Record<string, string> = {
  '/assets/atrium.css': 'text/css; charset=utf-8',
  '/assets/handoff.js': 'text/javascript; charset=utf-8',
};

/** The portal's own static files, read once into memory and served with an ETag. */
export function assets(): Koa.Middleware {
  const served = new Map(
    Object.entries(FILES).map(([path, type]) => {
      const body = readFileSync(fileURLToPath(new URL(`.${path}`, import.meta.url)));
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
