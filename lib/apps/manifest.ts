import { z } from 'zod';
import { GROUP_NAME } from '../directory/groups.ts';

/**
 * `app.json` beside an app's code. Unknown keys are refused so a typo (`grups`) cannot silently
 * leave an app open wider than intended.
 */
export const manifestSchema = z
  .object({
    title: z.string().trim().min(1).max(80).optional(),
    description: z.string().trim().max(500).optional(),
    groups: z.array(z.string().regex(GROUP_NAME, 'a group name: lowercase letters, digits, ".", "_" or "-"')).max(50).optional(),
    upstream: z
      .string()
      .url()
      .refine((v) => /^https?:\/\//.test(v), 'must be an http(s) URL')
      .optional(),
    command: z.string().trim().min(1).max(1000).optional(),
    /** true: only sessions whose sign-in used a second factor get in (step-up otherwise). */
    mfa: z.boolean({ error: 'must be true or false' }).optional(),
  })
  .strict()
  .refine((m) => !m.command || m.upstream, { message: '"command" needs "upstream" (where the started process listens)', path: ['command'] });

export type Manifest = z.infer<typeof manifestSchema>;

/** Parses manifest text; the error message names every problem with its field. */
export function parseManifest(text: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`app.json is not valid JSON: ${(err as Error).message}`);
  }
  const result = manifestSchema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new Error(`app.json is invalid: ${problems.join('; ')}`);
  }
  return result.data;
}
