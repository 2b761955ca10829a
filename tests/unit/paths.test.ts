import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../lib/errors.ts';
import { assertSafePath } from '../../lib/paths.ts';

/** The error assertSafePath throws for `path`, or undefined when it lets the path through. */
function refusal(path: string): BadRequestError | undefined {
  try {
    assertSafePath(path);
    return undefined;
  } catch (err) {
    if (!(err instanceof BadRequestError)) throw new Error(`assertSafePath threw something else for ${JSON.stringify(path)}: ${String(err)}`);
    return err;
  }
}

function expectRefused(path: string, reason: RegExp): void {
  const err = refusal(path);
  expect(err, `${JSON.stringify(path)} should be refused`).toBeDefined();
  expect(err!.status).toBe(400);
  expect(err!.code).toBe('bad_path');
  expect(err!.message).toMatch(/^This address cannot be used: /);
  expect(err!.message).toMatch(reason);
  expect(err!.message.endsWith('.')).toBe(true);
}

describe('assertSafePath', () => {
  it('lets ordinary paths through, including encoded characters that mean nothing special', () => {
    for (const path of [
      '/',
      '/apps/stable/hello/',
      '/apps/ea/chat/index.html',
      '/apps/ea/chat/file.tar.gz',
      '/apps/ea/chat/.well-known/x',
      '/apps/ea/chat/...',
      '/apps/ea/chat/a%20b',
      '/apps/ea/chat/%41%42',
      '/apps/ea/chat/%25', // a literal "%": decodes to "%", and a second decode of "%" fails, which is fine
      '/apps/ea/chat/%25zz/x', // "%zz" does not decode a second time: skipped, the next segment is checked
      '/apps/ea/chat/%2541', // decodes to "%41", then to "A": nothing hostile
      '/apps/ea/chat/caf%C3%A9',
      '/a?b=c', // assertSafePath sees paths; "?" is nothing to it
    ]) {
      expect(refusal(path), path).toBeUndefined();
    }
  });

  it('refuses a path that does not start with "/"', () => {
    expectRefused('apps/stable/x', /must start with "\/"/);
    expectRefused('', /must start with "\/"/);
    expectRefused('x/', /must start with "\/"/);
  });

  it('refuses empty segments', () => {
    expectRefused('//evil.example/', /empty path segments \("\/\/"\) are not allowed/);
    expectRefused('/apps//stable/x', /empty path segments/);
    expectRefused('/apps/stable/x//', /empty path segments/);
  });

  it('refuses dot segments, raw and percent-encoded', () => {
    for (const path of ['/apps/ea/../devel/x', '/apps/ea/./x', '/apps/ea/..', '/apps/ea/%2e%2e/devel/x', '/apps/ea/%2E%2E/devel/x', '/apps/ea/.%2e/x', '/apps/ea/%2e/x', '/..']) {
      expectRefused(path, /dot segments are not allowed/);
    }
  });

  it('refuses encoded slashes and backslashes, raw backslashes and control characters', () => {
    for (const path of ['/apps/ea/a%2fb', '/apps/ea/a%2Fb', '/apps/ea/a%5cb', '/apps/ea/a\\b', '/apps/ea/\\..\\x', '/apps/ea/a%00b', '/apps/ea/a\x00b', '/apps/ea/a\x01b', '/apps/ea/a\tb', '/apps/ea/a\nb', '/apps/ea/a\x1fb', '/apps/ea/a\x7fb', '/apps/ea/a%7fb', '/apps/ea/a%0d%0ab']) {
      expectRefused(path, /encoded slashes, backslashes and control characters are not allowed/);
    }
  });

  it('refuses malformed percent-encoding', () => {
    for (const path of ['/apps/ea/%', '/apps/ea/%zz', '/apps/ea/%e0%a4%a', '/apps/ea/a%2', '/apps/ea/%ff']) {
      expectRefused(path, /malformed percent-encoding/);
    }
  });

  it('refuses what a second round of decoding would reveal', () => {
    for (const path of ['/apps/ea/%252e%252e/devel/x', '/apps/ea/%252e/x', '/apps/ea/%252fetc', '/apps/ea/%255c', '/apps/ea/%2500', '/apps/ea/%257f', '/apps/ea/x%252Fy']) {
      expectRefused(path, /double-encoded path tricks are not allowed/);
    }
  });

  it('checks every segment, not only the first or the last', () => {
    expectRefused('/%2e%2e/apps/ea/x', /dot segments/);
    expectRefused('/apps/%2e%2e/x', /dot segments/);
    expectRefused('/apps/ea/x/%2e%2e', /dot segments/);
    expectRefused('/apps/%25zz/%2e%2e', /dot segments/);
  });
});
