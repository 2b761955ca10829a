import { BadRequestError } from '../../lib/errors.ts';
import type { RelyingParty } from '../../lib/oidc/relying-party.ts';
import type { TokenVerifier } from '../../lib/oidc/token-verifier.ts';
import type { ProviderConfig } from '../../lib/providers/provider-config.ts';

/** One provider people sign in with, with what the portal needs to talk to it. */
export interface SignInProvider {
  config: ProviderConfig;
  rp: RelyingParty;
  /** Its JWTs: bearer tokens and back-channel logout tokens, with its own keys. */
  verifier: TokenVerifier;
  /** Whether its tokens' own `access:*` grants count (external providers; the embedded one's users get theirs from the directory). */
  tokenGrantsLevel: boolean;
  /** The audience its bearer tokens must carry. */
  audience: string | undefined;
}

/**
 * The configured providers, in the chooser's order. A session remembers the id of the one that
 * signed it in; a session from before several providers existed names none and is the first's.
 */
export class SignInProviders {
  private readonly byIdMap: Map<string, SignInProvider>;

  constructor(readonly list: readonly SignInProvider[]) {
    if (list.length === 0) throw new TypeError('at least one provider is needed');
    this.byIdMap = new Map(list.map((p) => [p.config.id, p]));
  }

  get primary(): SignInProvider {
    return this.list[0] as SignInProvider;
  }

  get several(): boolean {
    return this.list.length > 1;
  }

  /** The provider a session or a sign-in names; none named: the first. */
  of(id: string | undefined): SignInProvider | undefined {
    return id === undefined ? this.primary : this.byIdMap.get(id);
  }

  /** The provider `/login?provider=` names; an unknown one is the visitor's mistake (400). */
  chosen(id: string): SignInProvider {
    const provider = this.byIdMap.get(id);
    if (!provider) throw new BadRequestError('There is no such way to sign in here. Choose one from the sign-in page.', { code: 'unknown_provider' });
    return provider;
  }

  /** The provider whose issuer identifier (from discovery) is exactly `issuer`. */
  async byIssuer(issuer: string): Promise<SignInProvider | undefined> {
    // The configured issuer narrows it down without a network call (a token naming a stranger
    // costs nothing); discovery's issuer, compared exactly, decides.
    const bare = (text: string) => text.replace(/\/+$/, '');
    for (const provider of this.list) {
      if (bare(provider.rp.configuredIssuer.href) !== bare(issuer)) continue;
      try {
        if ((await provider.rp.provider()).issuer === issuer) return provider;
      } catch {
        // A provider that cannot be reached right now issued nothing this request can check.
      }
    }
    return undefined;
  }

  /** The Atrium subject of a provider account that has none on record yet (see ProviderConfig.subjectPrefix). */
  static subjectOf(provider: SignInProvider, sub: string): string {
    return `${provider.config.subjectPrefix}${sub}`;
  }
}
