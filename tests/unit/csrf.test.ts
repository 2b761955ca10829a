import { describe, expect, it } from 'vitest';
import { ForbiddenError } from '../../lib/errors.ts';
import type { PortalContext } from '../../portal/http/context.ts';
import { assertCsrf, newCsrfToken } from '../../portal/http/csrf.ts';

const ORIGIN = 'https://portal.example';
const TOKEN = 'c'.repeat(32);

/** As much of a Koa context as assertCsrf reads: request headers (ctx.get answers '' for a missing one), the session, the parsed body. */
function fakeContext(input: { headers?: Record<string, string>; session?: unknown; body?: unknown }): PortalContext {
  const headers = Object.fromEntries(Object.entries(input.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const ctx = {
    get: (name: string) => headers[name.toLowerCase()] ?? '',
    session: input.session === undefined ? { sub: 'user-1', uid: 1, csrf: TOKEN } : input.session,
    request: { body: input.body },
  };
  return ctx as unknown as PortalContext;
}

function refusal(ctx: PortalContext): ForbiddenError | undefined {
  try {
    assertCsrf(ctx, ORIGIN);
    return undefined;
  } catch (err) {
    if (!(err instanceof ForbiddenError)) throw new Error(`assertCsrf threw something other than a ForbiddenError: ${String(err)}`);
    return err;
  }
}

function expectCode(ctx: PortalContext, code: 'csrf_origin' | 'csrf_failed'): void {
  const err = refusal(ctx);
  expect(err, `expected ${code}`).toBeDefined();
  expect(err!.status).toBe(403);
  expect(err!.code).toBe(code);
  expect(err!.message).toBe(code === 'csrf_origin' ? 'This form was sent from another site.' : 'This form has expired. Reload the page and try again.');
}

describe('assertCsrf', () => {
  it('accepts the session’s token in the _csrf field or the X-CSRF-Token header, with or without an Origin of ours', () => {
    expect(refusal(fakeContext({ body: { _csrf: TOKEN } }))).toBeUndefined();
    expect(refusal(fakeContext({ headers: { 'X-CSRF-Token': TOKEN } }))).toBeUndefined();
    expect(refusal(fakeContext({ headers: { Origin: ORIGIN }, body: { _csrf: TOKEN } }))).toBeUndefined();
    expect(refusal(fakeContext({ headers: { Origin: ORIGIN, 'X-CSRF-Token': TOKEN }, body: {} }))).toBeUndefined();
  });

  it('refuses a form from another origin even with the right token', () => {
    for (const origin of ['https://evil.example', 'http://portal.example', 'https://portal.example:444', 'https://portal.example.evil.example', 'null']) {
      expectCode(fakeContext({ headers: { Origin: origin }, body: { _csrf: TOKEN } }), 'csrf_origin');
    }
  });

  it('refuses a missing, wrong or differently sized token', () => {
    expectCode(fakeContext({ body: {} }), 'csrf_failed');
    expectCode(fakeContext({}), 'csrf_failed');
    expectCode(fakeContext({ body: { _csrf: '' } }), 'csrf_failed');
    expectCode(fakeContext({ body: { _csrf: 'd'.repeat(32) } }), 'csrf_failed');
    expectCode(fakeContext({ body: { _csrf: TOKEN.slice(1) } }), 'csrf_failed');
    expectCode(fakeContext({ body: { _csrf: `${TOKEN}c` } }), 'csrf_failed');
    expectCode(fakeContext({ headers: { 'X-CSRF-Token': 'x' } }), 'csrf_failed');
  });

  it('reads the field first: a wrong field is not rescued by a right header', () => {
    expectCode(fakeContext({ headers: { 'X-CSRF-Token': TOKEN }, body: { _csrf: 'wrong' } }), 'csrf_failed');
  });

  it('falls back to the header when the field is not a string', () => {
    expect(refusal(fakeContext({ headers: { 'X-CSRF-Token': TOKEN }, body: { _csrf: [TOKEN] } }))).toBeUndefined();
    expectCode(fakeContext({ body: { _csrf: [TOKEN] } }), 'csrf_failed');
    expectCode(fakeContext({ body: { _csrf: 7 } }), 'csrf_failed');
  });

  it('refuses every form when the session is not signed in or has no token', () => {
    for (const session of [null, {}, { sub: 'user-1' }, { sub: 'user-1', uid: '1', csrf: TOKEN }, { sub: 'user-1', uid: 1 }, { sub: 'user-1', uid: 1, csrf: '' }]) {
      expectCode(fakeContext({ session, body: { _csrf: TOKEN }, headers: { 'X-CSRF-Token': TOKEN } }), 'csrf_failed');
    }
    // Not even an empty token matches an empty one.
    expectCode(fakeContext({ session: { sub: 'user-1', uid: 1, csrf: '' }, body: { _csrf: '' } }), 'csrf_failed');
  });
});

describe('newCsrfToken', () => {
  it('makes 24 random bytes, base64url', () => {
    const tokens = new Set(Array.from({ length: 20 }, () => newCsrfToken()));
    expect(tokens.size).toBe(20);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(Buffer.from(token, 'base64url')).toHaveLength(24);
    }
  });
});
