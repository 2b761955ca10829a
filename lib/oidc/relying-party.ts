import * as client from 'openid-client';
import { UnauthenticatedError, UpstreamError } from '../errors.ts';
import { fetchWithin, PROVIDER_TIMEOUT_MS } from './provider-calls.ts';
import { ProviderProbe } from './provider-probe.ts';

/** What must survive the trip to the provider and back, kept server-side of the browser's reach. */
export interface LoginTransaction {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  createdAt: number;
  /** Which configured provider (PROVIDERS id) the sign-in went to; the callback finishes it there. */
  provider?: string;
}

export interface TokenSet {
  issuedAt: number;
  accessToken: string;
  refreshToken: string | undefined;
  idToken: string | undefined;
  /** Epoch ms when the access token expires (undefined: the provider did not say). */
  expiresAt: number | undefined;
  scope: string | undefined;
  idClaims: Record<string, unknown>;
}

export interface RelyingPartyOptions {
  issuer: URL;
  clientId: string;
  clientSecret: string | undefined;
  redirectUri: string;
  scope: string;
  audience: string | undefined;
  /** Where the level is read from in the tokens (ACCESS_CLAIM). */
  accessClaim: string;
  /** Extra authorization parameters (e.g. `resource` for the embedded provider). */
  extraAuthParams?: Record<string, string>;
  /** Logout URL template for providers without an end_session_endpoint (`{returnTo}`, `{clientId}`). */
  logoutUrl?: string;
}

/**
 * The portal as an OpenID Connect client (openid-client v6): code flow with PKCE (S256), state and
 * nonce. Discovery happens on first use and is retried after a failure, so the portal can start
 * before its provider answers. Every call to the provider gives up after PROVIDER_TIMEOUT_MS, so a
 * provider that hangs holds no request for longer.
 */
export class RelyingParty {
  private configuration: Promise<client.Configuration> | undefined;
  private readonly probe: ProviderProbe;

  constructor(private readonly options: RelyingPartyOptions) {
    this.probe = new ProviderProbe(options.issuer);
  }

  /** The issuer as configured (discovery's `issuer` is the exact one: see provider()). */
  get configuredIssuer(): URL {
    return this.options.issuer;
  }

  get accessClaim(): string {
    return this.options.accessClaim;
  }

  private async config(): Promise<client.Configuration> {
    this.configuration ??= this.discover().catch((err: unknown) => {
      this.configuration = undefined;
      throw new UpstreamError('The identity provider cannot be reached; try again shortly.', { cause: err, code: 'idp_unreachable' });
    });
    return this.configuration;
  }

  private async discover(): Promise<client.Configuration> {
    const { issuer, clientId, clientSecret } = this.options;
    const auth = clientSecret ? client.ClientSecretBasic(clientSecret) : client.None();
    // Both go to the Configuration, so they bound every later call too (token, refresh, JWKS, userinfo).
    return client.discovery(issuer, clientId, undefined, auth, {
      execute: issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [],
      timeout: PROVIDER_TIMEOUT_MS / 1000,
      [client.customFetch]: fetchWithin(PROVIDER_TIMEOUT_MS),
    });
  }

  /** Whether the provider answers right now (readiness; see ProviderProbe). Never rejects. */
  ready(): Promise<boolean> {
    return this.probe.answers();
  }

  async startLogin(returnTo: string): Promise<{ url: URL; transaction: LoginTransaction }> {
    const config = await this.config();
    const verifier = client.randomPKCECodeVerifier();
    const transaction: LoginTransaction = {
      state: client.randomState(),
      nonce: client.randomNonce(),
      verifier,
      returnTo,
      createdAt: Date.now(),
    };
    const params: Record<string, string> = {
      redirect_uri: this.options.redirectUri,
      scope: this.options.scope,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: transaction.state,
      nonce: transaction.nonce,
      ...(this.options.audience ? { audience: this.options.audience } : {}),
      ...this.options.extraAuthParams,
    };
    return { url: client.buildAuthorizationUrl(config, params), transaction };
  }

  /** Exchanges the code; any mismatch (state, nonce, PKCE, issuer, signature) is a 401. */
  async finishLogin(callbackUrl: URL, transaction: LoginTransaction): Promise<TokenSet> {
    const config = await this.config();
    let response: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      response = await client.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: transaction.verifier,
        expectedState: transaction.state,
        expectedNonce: transaction.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      if (err instanceof client.ClientError || err instanceof client.AuthorizationResponseError || err instanceof client.ResponseBodyError) {
        throw new UnauthenticatedError('Sign-in did not complete; please try again.', { cause: err, code: 'login_failed' });
      }
      throw new UpstreamError('The identity provider did not complete the sign-in.', { cause: err, code: 'idp_error' });
    }
    return toTokenSet(response);
  }

  /**
   * Where the browser goes to end its session at the provider: the advertised end_session_endpoint
   * with `id_token_hint`, else the configured template (Auth0's /v2/logout), else nowhere.
   */
  async endSessionUrl(idToken: string | undefined, postLogoutRedirectUri: string): Promise<URL | undefined> {
    const config = await this.config();
    if (config.serverMetadata().end_session_endpoint) {
      return client.buildEndSessionUrl(config, {
        post_logout_redirect_uri: postLogoutRedirectUri,
        client_id: this.options.clientId,
        ...(idToken ? { id_token_hint: idToken } : {}),
      });
    }
    if (this.options.logoutUrl) {
      return new URL(
        this.options.logoutUrl
          .replaceAll('{returnTo}', encodeURIComponent(postLogoutRedirectUri))
          .replaceAll('{clientId}', encodeURIComponent(this.options.clientId)),
      );
    }
    return undefined;
  }

  /**
   * Trades the refresh token for new tokens. The provider refusing the grant (revoked, expired,
   * reused) is a 401: the session is over. Anything else (provider down) is a 502: the session may
   * live on while its access token does.
   */
  async refresh(refreshToken: string): Promise<TokenSet> {
    const config = await this.config();
    try {
      return toTokenSet(await client.refreshTokenGrant(config, refreshToken));
    } catch (err) {
      // Only the provider's verdict on this grant ends a session; a 5xx, a 429, an HTML error page
      // or a timeout is an outage, and the session may outlive it.
      if (err instanceof client.ResponseBodyError && (err.error === 'invalid_grant' || err.error === 'unauthorized_client')) {
        throw new UnauthenticatedError('Your session has ended; please sign in again.', { cause: err, code: 'session_expired' });
      }
      throw new UpstreamError('The identity provider did not answer the token refresh.', { cause: err, code: 'idp_error' });
    }
  }

  /** The provider's issuer identifier and JWKS location, from discovery. */
  async provider(): Promise<{ issuer: string; jwksUri: string | undefined }> {
    const metadata = (await this.config()).serverMetadata();
    return { issuer: metadata.issuer, jwksUri: metadata.jwks_uri };
  }

  get clientId(): string {
    return this.options.clientId;
  }
}

function toTokenSet(response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers): TokenSet {
  const expiresIn = response.expiresIn();
  return {
    issuedAt: Date.now(),
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    idToken: response.id_token,
    expiresAt: expiresIn === undefined ? undefined : Date.now() + expiresIn * 1000,
    scope: response.scope,
    idClaims: (response.claims() ?? {}) as Record<string, unknown>,
  };
}
