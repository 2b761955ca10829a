// Passkeys (WebAuthn) for Atrium's own pages: adding one on /profile, and using one as the second
// step of the embedded provider's sign-in. The server sends options as JSON (base64url fields, as
// @simplewebauthn/server makes them) and receives the credential as JSON in the same encoding.
(() => {
  const b64urlToBytes = (s) => {
    const pad = '='.repeat((4 - (s.length % 4)) % 4);
    const bin = atob((s + pad).replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  };
  const bytesToB64url = (buf) => {
    const bytes = new Uint8Array(buf);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const showError = (message) => {
    const box = document.getElementById('passkey-error');
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  };
  const post = async (url, body, csrf) => {
    const response = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...(csrf ? { 'X-CSRF-Token': csrf } : {}) },
      body: JSON.stringify(body ?? {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || data.error_description || `The server answered ${response.status}.`);
    return data;
  };

  if (!window.PublicKeyCredential) return;

  const add = document.getElementById('add-passkey');
  if (add) {
    document.getElementById('passkey-enrolment').hidden = false;
    add.addEventListener('click', async () => {
      const csrf = add.dataset.csrf;
      try {
        const options = await post('/profile/factors/passkey/options', { current: document.getElementById('passkey-password').value }, csrf);
        const credential = await navigator.credentials.create({
          publicKey: {
            ...options,
            challenge: b64urlToBytes(options.challenge),
            user: { ...options.user, id: b64urlToBytes(options.user.id) },
            excludeCredentials: (options.excludeCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
          },
        });
        const r = credential.response;
        const result = await post('/profile/factors/passkey', {
          label: document.getElementById('passkey-label').value,
          credential: {
            id: credential.id,
            rawId: bytesToB64url(credential.rawId),
            type: credential.type,
            clientExtensionResults: credential.getClientExtensionResults(),
            authenticatorAttachment: credential.authenticatorAttachment || undefined,
            response: {
              clientDataJSON: bytesToB64url(r.clientDataJSON),
              attestationObject: bytesToB64url(r.attestationObject),
              transports: typeof r.getTransports === 'function' ? r.getTransports() : [],
            },
          },
        }, csrf);
        if (result.recoveryCodes && result.recoveryCodes.length) {
          // The first factor: its recovery codes, shown only now.
          const note = document.createElement('p');
          note.setAttribute('role', 'status');
          note.textContent = `${result.added} is on. Your recovery codes, shown only now — keep them somewhere safe:`;
          const pre = document.createElement('pre');
          pre.dataset.testid = 'passkey-recovery-codes';
          pre.textContent = result.recoveryCodes.join('\n');
          add.after(note, pre);
        } else {
          location.assign('/profile');
        }
      } catch (err) {
        showError(`The passkey was not added: ${err.message}`);
      }
    });
  }

  const use = document.getElementById('use-passkey');
  if (use) {
    use.addEventListener('click', async () => {
      try {
        const options = await post(use.dataset.options, {});
        const assertion = await navigator.credentials.get({
          publicKey: {
            ...options,
            challenge: b64urlToBytes(options.challenge),
            allowCredentials: (options.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
          },
        });
        const r = assertion.response;
        const result = await post(use.dataset.action, {
          id: assertion.id,
          rawId: bytesToB64url(assertion.rawId),
          type: assertion.type,
          clientExtensionResults: assertion.getClientExtensionResults(),
          response: {
            clientDataJSON: bytesToB64url(r.clientDataJSON),
            authenticatorData: bytesToB64url(r.authenticatorData),
            signature: bytesToB64url(r.signature),
            userHandle: r.userHandle ? bytesToB64url(r.userHandle) : undefined,
          },
        });
        location.assign(result.redirectTo);
      } catch (err) {
        showError(`The passkey did not work: ${err.message}`);
      }
    });
  }
})();
