import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server';
import { BadRequestError } from '../errors.ts';
import type { StoredPasskey } from './factor-directory.ts';

/** The portal as a WebAuthn relying party: its public origin, and that origin's host as the RP ID. */
export interface PasskeyRelyingParty {
  origin: string;
  rpId: string;
}

export function passkeyRelyingParty(publicUrl: URL): PasskeyRelyingParty {
  return { origin: publicUrl.origin, rpId: publicUrl.hostname };
}

const TIMEOUT_MS = 120_000;

/** A refusal that says what went wrong without echoing the library's internals. */
const refused = (cause: unknown) => new BadRequestError('The passkey could not be verified. Try again, or use another factor.', { cause, code: 'passkey_refused' });

export async function registrationOptions(rp: PasskeyRelyingParty, user: { email: string | null; sub: string }, existing: StoredPasskey[]): Promise<PublicKeyCredentialCreationOptionsJSON> {
  return generateRegistrationOptions({
    rpName: 'Atrium',
    rpID: rp.rpId,
    userName: user.email ?? user.sub,
    attestationType: 'none',
    timeout: TIMEOUT_MS,
    excludeCredentials: existing.map((p) => ({ id: p.credentialId, transports: p.transports })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
  });
}

/** A verified new credential, ready to store; anything malformed or not matching the challenge is a 400. */
export async function verifyRegistration(rp: PasskeyRelyingParty, response: unknown, challenge: string) {
  let result: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
  try {
    result = await verifyRegistrationResponse({ response: response as RegistrationResponseJSON, expectedChallenge: challenge, expectedOrigin: rp.origin, expectedRPID: rp.rpId, requireUserVerification: false });
  } catch (err) {
    throw refused(err);
  }
  if (!result.verified) throw refused(undefined);
  const { credential } = result.registrationInfo;
  return { credentialId: credential.id, publicKey: Buffer.from(credential.publicKey).toString('base64url'), counter: credential.counter, transports: credential.transports ?? [] };
}

export async function authenticationOptions(rp: PasskeyRelyingParty, passkeys: StoredPasskey[]): Promise<PublicKeyCredentialRequestOptionsJSON> {
  return generateAuthenticationOptions({
    rpID: rp.rpId,
    timeout: TIMEOUT_MS,
    userVerification: 'preferred',
    allowCredentials: passkeys.map((p) => ({ id: p.credentialId, transports: p.transports as never })),
  });
}

/**
 * Checks an assertion against the user's own passkeys: the credential must be one of theirs, the
 * signature must verify with its stored public key over this challenge and origin, and the counter
 * must not go backwards (a cloned authenticator). Returns the passkey and its new counter.
 */
export async function verifyAuthentication(rp: PasskeyRelyingParty, response: unknown, challenge: string, passkeys: StoredPasskey[]): Promise<{ passkey: StoredPasskey; counter: number }> {
  const id = (response as { id?: unknown } | null)?.id;
  const passkey = typeof id === 'string' ? passkeys.find((p) => p.credentialId === id) : undefined;
  if (!passkey) throw refused(undefined);
  let result: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
  try {
    result = await verifyAuthenticationResponse({
      response: response as AuthenticationResponseJSON,
      expectedChallenge: challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.rpId,
      credential: { id: passkey.credentialId, publicKey: Buffer.from(passkey.publicKey, 'base64url'), counter: passkey.counter, transports: passkey.transports },
      requireUserVerification: false,
    });
  } catch (err) {
    throw refused(err);
  }
  if (!result.verified) throw refused(undefined);
  return { passkey, counter: result.authenticationInfo.newCounter };
}
