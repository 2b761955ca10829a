import { Readable } from 'node:stream';
import type { AuditEntry } from '../../../lib/directory/audit.ts';

export type ExportFormat = 'csv' | 'jsonl';

const CSV_COLUMNS = ['id', 'at', 'actor', 'action', 'target', 'before', 'after'] as const;

/**
 * The audit log as a download, written as it is read (one batch of rows at a time), so an export
 * of a long log neither waits for all of it nor holds it in memory.
 */
export function exportStream(entries: AsyncIterable<AuditEntry>, format: ExportFormat): Readable {
  return Readable.from(format === 'csv' ? csvLines(entries) : jsonLines(entries));
}

async function* jsonLines(entries: AsyncIterable<AuditEntry>): AsyncGenerator<string> {
  for await (const e of entries) yield `${JSON.stringify({ ...e, at: new Date(e.at).toISOString() })}\n`;
}

async function* csvLines(entries: AsyncIterable<AuditEntry>): AsyncGenerator<string> {
  yield `${CSV_COLUMNS.join(',')}\r\n`;
  for await (const e of entries) {
    const json = (value: unknown) => (value === undefined ? '' : JSON.stringify(value));
    yield `${[String(e.id), new Date(e.at).toISOString(), e.actor, e.action, e.target, json(e.before), json(e.after)].map(csvCell).join(',')}\r\n`;
  }
}

/**
 * RFC 4180 quoting, and a leading apostrophe for text a spreadsheet would run as a formula: actors
 * and targets come from e-mail addresses and names that users choose (`=HYPERLINK(…)`).
 */
function csvCell(text: string): string {
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
