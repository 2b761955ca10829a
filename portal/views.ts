import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';

/** Server-rendered pages; nunjucks escapes every interpolation unless a template says `| safe`. */
export interface Views {
  render(template: string, data: Record<string, unknown>): string;
}

export function createViews(): Views {
  const dir = fileURLToPath(new URL('./views', import.meta.url));
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir, { noCache: false }), {
    autoescape: true,
    throwOnUndefined: false,
  });
  env.addFilter('isodate', (ms: unknown) => (typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : ''));
  return { render: (template, data) => env.render(template, data) };
}
