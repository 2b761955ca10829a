import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';

/** Server-rendered pages; nunjucks escapes every interpolation unless a template says `| safe`. */
export interface Views {
  render(template: string, data: Record<string, unknown>): string;
  /** A value every template sees (e.g. the admin console's security warnings), set once at start-up. */
  setGlobal(name: string, value: unknown): void;
}

/**
 * Each slice keeps its templates beside its code; one environment searches them all, so a template
 * names another ("layout.njk", "admin/layout.njk") without knowing which folder holds it.
 */
const TEMPLATE_DIRS = ['./views', '../console/views', '../idp/views', '../apps/views'];

export function createViews(): Views {
  const dirs = TEMPLATE_DIRS.map((dir) => fileURLToPath(new URL(dir, import.meta.url)));
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dirs, { noCache: false }), {
    autoescape: true,
    throwOnUndefined: false,
  });
  env.addFilter('isodate', (ms: unknown) => (typeof ms === 'number' && Number.isFinite(ms) ? new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : ''));
  return { render: (template, data) => env.render(template, data), setGlobal: (name, value) => void env.addGlobal(name, value) };
}
