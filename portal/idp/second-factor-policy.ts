import { interactionPolicy, type KoaContextWithOIDC } from 'oidc-provider';
import { assuranceOf } from '../../lib/factors/assurance.ts';
import type { FactorDirectory } from '../../lib/factors/factor-directory.ts';
import type { UserDirectory } from '../../lib/directory/users.ts';

/**
 * The embedded provider's interaction policy: its defaults, plus one check on the login prompt.
 * A provider session made with the password alone is not reused — the sign-in page is shown — when
 * the account must have a second factor (a group requires it) or the request asks for one
 * (`acr_values`, see step-up.ts). Without it, a provider session from before an admin required a
 * factor would sign the user in again with no second step at all.
 */
export function secondFactorPolicy(deps: { users: UserDirectory; factors: Pick<FactorDirectory, 'requiredFor'>; asked: (acrValues: unknown) => boolean }): interactionPolicy.Prompt[] {
  const policy = interactionPolicy.base();
  const login = policy.get('login');
  login?.checks.add(
    new interactionPolicy.Check('second_factor', 'A sign-in with a second factor is required', async (ctx: KoaContextWithOIDC) => {
      const { session, result, params } = ctx.oidc;
      // Just signed in here (this very interaction): what it did is what the account needs.
      if (!session?.accountId || result?.login) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      if (assuranceOf({ amr: session.amr }).mfa) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      if (deps.asked(params?.acr_values)) return interactionPolicy.Check.REQUEST_PROMPT;
      const user = await deps.users.bySub(session.accountId);
      return user && (await deps.factors.requiredFor(user.id)) ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
    }),
  );
  return policy;
}
