import { AtriumError } from '../../../lib/errors.ts';
import { prefersHtml, type PortalContext } from '../../http/context.ts';
import type { Views } from '../../http/views.ts';
import { render, type Crumb } from './kit.ts';

/**
 * A form that could not be applied, for the page that holds it: which form, why, and what was typed
 * (so nothing has to be typed again). Passwords and the CSRF token are never echoed back.
 */
export interface FormProblem {
  form: string;
  message: string;
  input: Record<string, string>;
}

/** What a page needs to be drawn again: its template and its data, given the problem to show. */
export type PageBuilder = (problem: FormProblem) => Promise<{ template: string; data: Record<string, unknown> & { crumbs?: Crumb[] } }>;

const NEVER_ECHOED = new Set(['_csrf', 'password']);

/**
 * Runs a form's change. When the directory refuses it (a cycle, an unknown user, a bad name: any
 * 4xx AtriumError), the page that holds the form is drawn again with the status of the refusal, the
 * message next to that form and the input kept, instead of a generic error page the admin can only
 * leave. API callers (JSON) and failures of the portal itself (5xx) still go to the error handler,
 * and so does a refusal when the page itself cannot be drawn any more (its group was deleted).
 */
export async function applyForm(ctx: PortalContext, views: Views, form: string, page: PageBuilder, change: () => Promise<void>): Promise<void> {
  try {
    await change();
  } catch (err) {
    if (!(err instanceof AtriumError) || err.status >= 500 || !prefersHtml(ctx)) throw err;
    const problem: FormProblem = { form, message: err.message, input: typedInput(ctx) };
    let again: Awaited<ReturnType<PageBuilder>>;
    try {
      again = await page(problem);
    } catch {
      throw err;
    }
    render(ctx, views, again.template, { ...again.data, problem });
    ctx.status = err.status;
  }
}

function typedInput(ctx: PortalContext): Record<string, string> {
  const body = (ctx.request as { body?: Record<string, unknown> }).body ?? {};
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) if (typeof value === 'string' && !NEVER_ECHOED.has(name)) kept[name] = value.slice(0, 2000);
  return kept;
}
