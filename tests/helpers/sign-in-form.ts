import type { Agent, AgentResponse } from './agent.ts';

/** What one POST to the embedded provider's sign-in form came to. */
export type SignInOutcome = 'signed-in' | 'refused' | 'throttled';

export interface SignInForm {
  /** Posts one email and password to the form; the form stays open after a refusal. */
  submit(email: string, password: string): Promise<SignInOutcome>;
  /** The last raw answer, for messages when an expectation fails. */
  readonly last: AgentResponse | undefined;
}

/**
 * Opens the embedded provider's real sign-in form once (GET /login → /idp/auth → the interaction
 * page) and lets a test post to it many times, as a guesser at a browser would: a refused attempt
 * re-renders the same form, so only a sign-in ends the interaction.
 */
export async function openSignInForm(agent: Agent): Promise<SignInForm> {
  const hops = await agent.follow('/login?returnTo=/me');
  const page = hops.at(-1) as AgentResponse;
  const action = /<form method="post" action="([^"]+)"/.exec(page.text)?.[1];
  if (page.status !== 200 || !action) throw new Error(`expected the sign-in form, got ${page.status}: ${page.text.slice(0, 300)}`);
  const target = action.replace(/&amp;/g, '&');
  let last: AgentResponse | undefined;
  let done = false;
  return {
    get last() {
      return last;
    },
    async submit(email, password) {
      if (done) throw new Error('this sign-in form already signed someone in; open another');
      last = await agent.request('POST', target, { form: { email, password } });
      if (last.status === 303) {
        done = true;
        return 'signed-in';
      }
      if (last.status === 429) return 'throttled';
      if (last.status === 401) return 'refused';
      throw new Error(`unexpected answer from the sign-in form: ${last.status} ${last.text.slice(0, 300)}`);
    },
  };
}
