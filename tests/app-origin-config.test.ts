import { describe, expect, it } from 'vitest';
import { appFromHost, appOrigin, parseAppOrigin, type AppOriginPattern } from '../lib/apps/origins.ts';
import { loadConfig } from '../lib/config.ts';
import { configProblems } from './helpers/config-problems.ts';

const problems = configProblems;

describe('APP_ORIGIN', () => {
  it('accepts a host per app and fills it in', () => {
    const config = loadConfig({ PUBLIC_URL: 'http://localhost:3000', APP_ORIGIN: 'http://{tier}-{name}.apps.localhost:3000' });
    const pattern = config.appOrigin as AppOriginPattern;
    expect(pattern).toMatchObject({ protocol: 'http:', hostSuffix: '.apps.localhost', port: '3000' });
    expect(appOrigin(pattern, 'ea', 'chat-room')).toBe('http://ea-chat-room.apps.localhost:3000');
  });

  it.each([
    ['https://apps.example.com', 'must contain'],
    ['https://x{tier}-{name}.apps.example.com', 'whole first label'],
    ['https://{tier}-{name}', 'whole first label'],
    ['https://{tier}-{name}.apps.example.com/path', 'only scheme, host and port'],
    ['ftp://{tier}-{name}.apps.example.com', 'http(s)'],
    ['https://user:pw@{tier}-{name}.apps.example.com', 'only scheme, host and port'],
    ['http://{tier}-{name}.apps.example.com', 'same scheme'],
  ])('refuses %s with a clear problem', (value, expected) => {
    const found = problems({ PUBLIC_URL: 'https://atrium.example.com', APP_ORIGIN: value });
    expect(found.some((p) => p.startsWith('APP_ORIGIN') && p.includes(expected)), found.join('\n')).toBe(true);
  });

  it('refuses app hosts that would include the portal’s own host', () => {
    expect(problems({ PUBLIC_URL: 'https://atrium.example.com', APP_ORIGIN: 'https://{tier}-{name}.example.com' }).join()).toContain('must not itself look like an app host');
    expect(problems({ PUBLIC_URL: 'https://atrium.example.com', APP_ORIGIN: 'https://{tier}-{name}.atrium.example.com' }).join()).toContain('must not itself look like an app host');
  });

  it('needs https in production', () => {
    const found = problems({ NODE_ENV: 'production', SESSION_SECRET: 'x'.repeat(40), PUBLIC_URL: 'http://intranet:3000', ALLOW_HTTP: '', APP_ORIGIN: 'http://{tier}-{name}.apps.intranet:3000' });
    expect(found.some((p) => p.startsWith('APP_ORIGIN: production needs https'))).toBe(true);
  });

  it('refuses an APPS_USER that is no user name', () => {
    expect(problems({ APPS_USER: 'root; rm -rf /' }).join()).toContain('APPS_USER');
  });
});

describe('which app a Host names', () => {
  const pattern = parseAppOrigin('https://{tier}-{name}.apps.example.com') as AppOriginPattern;
  it.each([
    ['ea-chat.apps.example.com', { tier: 'ea', name: 'chat' }],
    ['EA-Chat.Apps.Example.com', { tier: 'ea', name: 'chat' }],
    ['ea-chat.apps.example.com:443', { tier: 'ea', name: 'chat' }],
    ['devel-my-lab.apps.example.com', { tier: 'devel', name: 'my-lab' }],
  ])('%s → an app', (host, expected) => expect(appFromHost(pattern, host)).toEqual(expected));
  it.each(['apps.example.com', 'atrium.example.com', 'a.ea-chat.apps.example.com', 'ea-chat.apps.example.com.evil.test', 'ea-chat.apps.example.com:8443', '-chat.apps.example.com', 'eachat.apps.example.com', '', 'evil.example'])(
    '%s → no app',
    (host) => expect(appFromHost(pattern, host)).toBeUndefined(),
  );
  // The label is `<tier>-<name>` exactly: a tier that exists and a name discovery accepts for an app folder.
  it.each([
    'evil,ea-chat.apps.example.com', // Koa reads `evil`
    'ea-evil,chat.apps.example.com',
    'x@ea-chat.apps.example.com',
    'ea-a%40b.apps.example.com',
    'ea-chat%2c.apps.example.com',
    'admin-chat.apps.example.com', // admin is a level, not a tier
    'nope-chat.apps.example.com',
    'ea--chat.apps.example.com',
    'ea-chat-.apps.example.com',
    'ea-ch_at.apps.example.com',
    'ea- chat.apps.example.com',
    `ea-${'a'.repeat(64)}.apps.example.com`,
  ])('%s → no app', (host) => expect(appFromHost(pattern, host)).toBeUndefined());
  it('names only apps whose folder discovery would load', () => {
    expect(appFromHost(pattern, `stable-${'a'.repeat(63)}.apps.example.com`)).toEqual({ tier: 'stable', name: 'a'.repeat(63) });
    expect(appFromHost(pattern, 'devel-0.apps.example.com')).toEqual({ tier: 'devel', name: '0' });
  });
});
