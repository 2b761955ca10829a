import type { Crumb } from './kit.ts';

/**
 * What a confirmation page asks before a destructive change (remove a member, un-nest, revoke
 * sessions, disable, delete). A GET draws it; its form POSTs the change with the CSRF token, so it
 * works without JavaScript and a link alone never changes anything.
 */
export interface Confirmation {
  /** The question, e.g. "Remove ea@example.com from devel?" */
  question: string;
  /** What will happen, in a sentence. */
  consequence: string;
  /** Where the form posts, with the fields it carries. */
  action: string;
  fields: Record<string, string>;
  /** The button's words, e.g. "Remove". */
  confirm: string;
  /** Where "Cancel" goes: the page the admin came from. */
  cancel: string;
  crumbs: Crumb[];
}

/** The template and data of a confirmation page, also used to draw it again with a refusal. */
export function confirmationPage(confirmation: Confirmation): { template: string; data: Record<string, unknown> & { crumbs: Crumb[] } } {
  return { template: 'confirm.njk', data: { title: confirmation.question, confirmation, crumbs: confirmation.crumbs } };
}
