import { BadRequestError } from '../../lib/errors.ts';
import type { PortalContext } from '../http/context.ts';
import type { Views } from '../http/views.ts';
import type { SignInProvider, SignInProviders } from './sign-in-providers.ts';

/** What a chooser link carries on of the /login query (returnTo, a step-up's parameters): bounded. */
const KEPT_PARAMS = 10;
const KEPT_CHARS = 2048;

/**
 * Which provider `/login` starts a sign-in with. `?provider=<id>` names one (an unknown id is a
 * 400); with one provider there is nothing to choose; a signed-in user signs in again where they
 * did (a step-up for an app that wants a second factor, say); otherwise, with several, the chooser
 * page is the answer (undefined). The page is plain links, one per provider, each `/login` again
 * with the same query and `provider` set: it works without JavaScript, and a screen reader hears
 * a list of "Sign in with …" links under one heading.
 */
export function chosenProvider(ctx: PortalContext, providers: SignInProviders, views: Views, signedInWith?: { provider?: string }): SignInProvider | undefined {
  const asked = ctx.query.provider;
  if (asked !== undefined) {
    if (typeof asked !== 'string') throw new BadRequestError('Choose one way to sign in.', { code: 'unknown_provider' });
    return providers.chosen(asked);
  }
  if (!providers.several) return providers.primary;
  const current = signedInWith && providers.of(signedInWith.provider);
  if (current) return current;
  const kept = Object.entries(ctx.query)
    .filter((entry): entry is [string, string] => entry[0] !== 'provider' && typeof entry[1] === 'string' && entry[1].length <= KEPT_CHARS)
    .slice(0, KEPT_PARAMS);
  const choices = providers.list.map((p) => ({
    id: p.config.id,
    title: p.config.title,
    href: `/login?${new URLSearchParams([...kept, ['provider', p.config.id]]).toString()}`,
  }));
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'html';
  ctx.body = views.render('sign-in-chooser.njk', { title: 'Sign in', choices, user: ctx.state.user });
  return undefined;
}
