// <atrium-bar>: the portal bar an app page shows with one line (README "App chrome"):
//   <script src="/.well-known/atrium/bar.js" defer></script> … <atrium-bar></atrium-bar>
// It draws who is signed in, a link back to the launcher and a link to sign out, inside a shadow
// root so the app's CSS cannot reach it (and its CSS does not leak into the app).
// What it shows comes from /.well-known/atrium/bar.json on the page's own origin: the portal answers
// that path on its origin and on every app origin (where the page cannot read the portal's cookies),
// from the session that let the page in. Signing out is the portal's confirmation page, a form that
// POSTs with the session's CSRF token: no token ever reaches an app page, and no GET signs anyone out.
(() => {
  if (typeof customElements === 'undefined' || customElements.get('atrium-bar')) return;

  const INFO = '/.well-known/atrium/bar.json';
  const STYLE = `
    /* !important on the host: in the cascade a shadow root's important rules beat the page's, so an
       app's "* { display: none !important }" cannot hide or shrink the bar either. */
    :host { all: initial !important; display: block !important; visibility: visible !important; opacity: 1 !important; contain: content;
      font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif !important; color: var(--fg) !important;
      --bg: #ffffff; --fg: #1b1f24; --muted: #4b5563; --line: #767d88; --accent: #0b57d0; --ring: #0b57d0; }
    @media (prefers-color-scheme: dark) {
      :host { --bg: #16181d; --fg: #e8eaed; --muted: #b6bcc6; --line: #8b929c; --accent: #8ab4f8; --ring: #8ab4f8; }
    }
    :host([hidden]) { display: none !important; }
    nav { display: flex; align-items: center; gap: .5rem 1rem; flex-wrap: wrap; padding: .5rem 1rem; background: var(--bg); color: var(--fg);
      border-bottom: 1px solid var(--line); box-sizing: border-box; max-width: 100%; }
    a { color: var(--accent); text-decoration: none; font-weight: 600; border-radius: 4px; padding: .25rem .1rem; }
    a:hover { text-decoration: underline; }
    a:focus-visible { outline: 2px solid var(--ring); outline-offset: 2px; }
    .home { white-space: nowrap; color: var(--fg); }
    .home span { color: var(--accent); }
    .who { display: flex; align-items: center; gap: .4rem; min-width: 0; flex: 1 1 8rem; justify-content: flex-end; }
    .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
    .level { flex: none; border: 1px solid var(--line); border-radius: 999px; padding: 0 .5rem; font-size: .8rem; font-weight: 600; color: var(--fg); }
    .out { white-space: nowrap; }
    .note { color: var(--muted); }
    /* On a phone: the launcher and Sign out on the first line, who you are on a line of its own. */
    @media (max-width: 30rem) {
      .who { order: 3; flex-basis: 100%; justify-content: flex-start; }
      .out { margin-left: auto; }
    }
  `;

  /** An element with text (never HTML: names and levels are data). */
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };

  class AtriumBar extends HTMLElement {
    connectedCallback() {
      if (this.shadowRoot) return;
      const root = this.attachShadow({ mode: 'open' });
      const style = document.createElement('style');
      style.textContent = STYLE;
      this.nav = el('nav', { 'aria-label': 'Atrium' });
      root.append(style, this.nav);
      this.load();
    }

    async load() {
      let info;
      try {
        const answer = await fetch(INFO, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
        if (!answer.ok) throw new Error(`bar: ${answer.status}`);
        info = await answer.json();
      } catch {
        // Not signed in (or the portal is away): the bar says so rather than draw half a bar.
        info = undefined;
      }
      this.draw(info);
    }

    draw(info) {
      const nav = this.nav;
      nav.replaceChildren();
      const home = el('a', { class: 'home', href: info ? info.launcher : '/', 'data-part': 'launcher' });
      home.append(el('span', { 'aria-hidden': 'true' }, '◆ '), 'All apps');
      nav.append(home);
      if (!info) {
        nav.append(el('span', { class: 'note', 'data-part': 'note' }, 'Not signed in'));
        return;
      }
      const who = el('span', { class: 'who' });
      who.append(el('span', { class: 'name', 'data-part': 'name', title: info.email || info.name }, info.name));
      who.append(el('span', { class: 'level', 'data-part': 'level' }, info.levelLabel));
      nav.append(who, el('a', { class: 'out', href: info.signOut, 'data-part': 'sign-out' }, 'Sign out'));
      this.dataset.ready = '';
    }
  }

  customElements.define('atrium-bar', AtriumBar);
})();
