import { describe, expect, it } from 'vitest';
import { parse } from '../../lib/cli.ts';

/** `atrium sessions revoke <email> --session ID`: ids are base64url, and one in 64 starts with `-`. */
describe('the CLI reads a session id that starts with a dash', () => {
  it('takes the word after --session as its value, whatever it starts with', () => {
    const { values, positionals } = parse(['sessions', 'revoke', 'ea@example.com', '--session', '-Ab_c9', '--json']);
    expect(values.session).toBe('-Ab_c9');
    expect(values.json).toBe(true);
    expect(positionals).toEqual(['sessions', 'revoke', 'ea@example.com']);
  });

  it('still reads --session=ID, and leaves what follows -- alone', () => {
    expect(parse(['sessions', 'revoke', 'a@b', '--session=-x']).values.session).toBe('-x');
    expect(parse(['users', 'list', '--', '--session', 'y']).positionals).toEqual(['users', 'list', '--session', 'y']);
  });

  it('still refuses --session followed by another option: the id was forgotten, and the option is not eaten', () => {
    expect(() => parse(['sessions', 'revoke', 'a@b', '--session', '--json'])).toThrow(/ambiguous/);
    expect(() => parse(['sessions', 'revoke', 'a@b', '--session', '-h'])).toThrow(/ambiguous/);
    expect(() => parse(['sessions', 'revoke', 'a@b', '--session', '--name=x'])).toThrow(/ambiguous/);
  });

  it('still refuses --session with nothing after it', () => {
    expect(() => parse(['sessions', 'revoke', 'a@b', '--session'])).toThrow(/argument missing/);
  });
});
