import type { Database } from '../db/schema.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';

/**
 * The extra profile fields, declared once (admins can add more) and validated everywhere a profile
 * is written: the user's /profile page, the admin console, child apps through lib/profile.
 */
export const FIELD_TYPES = ['text', 'textarea', 'url', 'email', 'select'] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export interface ProfileField {
  name: string;
  label: string;
  type: FieldType;
  required: boolean;
  maxLength: number;
  options: string[] | null;
  userEditable: boolean;
  position: number;
}

const FIELD_NAME = /^[a-z][a-z0-9_]{0,63}$/;
const RESERVED = new Set(['__proto__', 'constructor', 'prototype', 'sub', 'email', 'name', 'picture', 'level', 'groups']);

export class ProfileFields {
  constructor(private readonly database: Database) {}

  async list(): Promise<ProfileField[]> {
    const rows = await this.database.db.selectFrom('profile_fields').selectAll().orderBy('position').orderBy('name').execute();
    return rows.map((r) => ({
      name: r.name,
      label: r.label,
      type: (FIELD_TYPES as readonly string[]).includes(r.type) ? (r.type as FieldType) : 'text',
      required: Number(r.required) === 1,
      maxLength: Number(r.max_length),
      options: r.options ? (JSON.parse(r.options) as string[]) : null,
      userEditable: Number(r.user_editable) === 1,
      position: Number(r.position),
    }));
  }

  async add(input: { name: string; label: string; type: string; required?: boolean; maxLength?: number; options?: string[]; userEditable?: boolean }): Promise<ProfileField> {
    const name = input.name.trim();
    if (!FIELD_NAME.test(name) || RESERVED.has(name)) throw new BadRequestError('A field name is lowercase letters, digits and "_", starting with a letter, and not a reserved word.');
    const label = input.label.trim();
    if (label.length < 1 || label.length > 100) throw new BadRequestError('A label is 1-100 characters.');
    if (!(FIELD_TYPES as readonly string[]).includes(input.type)) throw new BadRequestError(`A field type is one of ${FIELD_TYPES.join(', ')}.`);
    const maxLength = input.maxLength ?? (input.type === 'textarea' ? 2000 : 200);
    if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > 10_000) throw new BadRequestError('The maximum length is between 1 and 10000.');
    const options = input.type === 'select' ? (input.options ?? []).map((o) => o.trim()).filter(Boolean) : null;
    if (input.type === 'select' && (!options || options.length === 0 || options.length > 100)) throw new BadRequestError('A select field needs 1-100 options.');
    const fields = await this.list();
    if (fields.some((f) => f.name === name)) throw new ConflictError(`A profile field named "${name}" already exists.`, 'field_exists');
    await this.database.db
      .insertInto('profile_fields')
      .values({
        name,
        label,
        type: input.type,
        required: input.required ? 1 : 0,
        max_length: maxLength,
        options: options ? JSON.stringify(options) : null,
        user_editable: input.userEditable === false ? 0 : 1,
        position: fields.length + 1,
        created_at: Date.now(),
      })
      .execute();
    return (await this.list()).find((f) => f.name === name) as ProfileField;
  }

  /** Removes the declaration only: values users already typed stay in their profiles. */
  async remove(name: string): Promise<void> {
    const result = await this.database.db.deleteFrom('profile_fields').where('name', '=', name).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFoundError(`There is no profile field named "${name}".`);
  }
}

export class ProfileValidationError extends BadRequestError {
  constructor(readonly fieldErrors: Record<string, string>) {
    super(`The profile has problems: ${Object.entries(fieldErrors).map(([k, v]) => `${k}: ${v}`).join('; ')}`, { code: 'invalid_profile' });
    Object.assign(this.details, { fields: fieldErrors });
  }
}

/**
 * Validates a change set against the declared fields. Unknown fields, non-strings, over-long
 * values, bad URLs/emails and options outside a select's list are refused; an empty string clears
 * a field. `asAdmin` may set fields users cannot edit themselves.
 */
export function validateProfileChanges(fields: ProfileField[], changes: Record<string, unknown>, options: { asAdmin: boolean }): Record<string, string | null> {
  const errors: Record<string, string> = {};
  const out: Record<string, string | null> = {};
  const byName = new Map(fields.map((f) => [f.name, f]));
  for (const [key, raw] of Object.entries(changes)) {
    const field = byName.get(key);
    if (!field || !Object.hasOwn(changes, key)) {
      errors[key.slice(0, 64)] = 'is not a profile field';
      continue;
    }
    if (!field.userEditable && !options.asAdmin) {
      errors[key] = 'can only be changed by an administrator';
      continue;
    }
    if (raw === null) {
      out[key] = null;
      continue;
    }
    if (typeof raw !== 'string') {
      errors[key] = 'must be text';
      continue;
    }
    const value = raw.replace(/\r\n/g, '\n').trim();
    if (value === '') {
      out[key] = null;
      continue;
    }
    if (field.type !== 'textarea' && /[\x00-\x1f\x7f]/.test(value)) errors[key] = 'must be a single line without control characters';
    else if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(value)) errors[key] = 'must not contain control characters';
    else if ([...value].length > field.maxLength) errors[key] = `must be at most ${field.maxLength} characters`;
    else if (field.type === 'url' && !/^https?:\/\/[^\s]+$/i.test(value)) errors[key] = 'must be an http(s) URL';
    else if (field.type === 'email' && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) errors[key] = 'must be an email address';
    else if (field.type === 'select' && !field.options?.includes(value)) errors[key] = `must be one of ${field.options?.join(', ')}`;
    else out[key] = value;
  }
  if (Object.keys(errors).length > 0) throw new ProfileValidationError(errors);
  return out;
}

/**
 * Refuses a change that leaves a required field empty. Only fields the change names are checked,
 * so someone whose profile predates a new required field can still save the others.
 */
export function assertRequiredKept(fields: ProfileField[], changes: Record<string, unknown>, profile: Record<string, unknown>): void {
  const errors: Record<string, string> = {};
  for (const field of fields) {
    if (field.required && Object.hasOwn(changes, field.name) && (profile[field.name] === undefined || profile[field.name] === '')) errors[field.name] = 'is required';
  }
  if (Object.keys(errors).length > 0) throw new ProfileValidationError(errors);
}
