import { isDatabaseUnreachable } from './unreachable.ts';

export type AvailabilityChange = { up: true } | { up: false; reason: string };

/**
 * Whether the database is answering, as the queries find it: one report when it stops (with the
 * driver's reason) and one when it answers again, so an operator reads two lines per outage rather
 * than one per failed request. A query the database answers with an error of its own (a duplicate
 * key) counts as answering.
 */
export class DatabaseAvailability {
  private up = true;

  constructor(private readonly listener: ((change: AvailabilityChange) => void) | undefined) {}

  answered(): void {
    if (this.up) return;
    this.up = true;
    this.listener?.({ up: true });
  }

  failed(err: unknown): void {
    if (!isDatabaseUnreachable(err)) return this.answered();
    if (!this.up) return;
    this.up = false;
    this.listener?.({ up: false, reason: reasonOf(err) });
  }
}

/** The driver's code for a failure (ECONNREFUSED, ETIMEDOUT, …), else its message. */
export function reasonOf(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | null;
  if (typeof e?.code === 'string' && e.code !== 'unavailable') return e.code;
  if (e?.cause !== undefined) return reasonOf(e.cause);
  return typeof e?.message === 'string' ? e.message : String(err);
}
