import type { AuditFilter } from '../../../lib/directory/audit.ts';
import type { PortalContext } from '../../http/context.ts';
import { queryText } from './kit.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** The audit log's filter as the GET form sends it, and as the form shows it again. */
export interface AuditQuery {
  filter: AuditFilter;
  /** The fields as typed, for the form, the pager's links and the export links. */
  form: { actor: string; action: string; target: string; from: string; to: string };
}

/**
 * Reads the filter form. Dates are whole UTC days, both ends included ("to 2026-05-01" takes in
 * all of that day); a date that is not one is left out rather than refused, as a search box would.
 */
export function auditQuery(ctx: PortalContext): AuditQuery {
  const form = {
    actor: queryText(ctx, 'actor').trim(),
    action: queryText(ctx, 'action', 100).trim(),
    target: queryText(ctx, 'target').trim(),
    from: validDate(queryText(ctx, 'from', 10)),
    to: validDate(queryText(ctx, 'to', 10)),
  };
  const filter: AuditFilter = {};
  if (form.actor) filter.actor = form.actor;
  if (form.action) filter.action = form.action;
  if (form.target) filter.target = form.target;
  if (form.from) filter.from = dayStart(form.from);
  if (form.to) filter.to = dayStart(form.to) + DAY_MS;
  return { filter, form };
}

function validDate(text: string): string {
  const match = DATE.exec(text);
  if (!match) return '';
  const [, y, m, d] = match.map(Number) as [number, number, number, number];
  const at = new Date(Date.UTC(y, m - 1, d));
  return at.getUTCFullYear() === y && at.getUTCMonth() === m - 1 && at.getUTCDate() === d ? text : '';
}

function dayStart(date: string): number {
  return Date.parse(`${date}T00:00:00Z`);
}
