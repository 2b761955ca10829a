// Filters the launcher's cards as the user types; without scripts the search form does it (GET /?q=).
const input = document.getElementById('q');
const status = document.getElementById('search-status');
if (input && status) {
  const cards = [...document.querySelectorAll('li.card[data-search]')];
  input.addEventListener('input', () => {
    const needle = input.value.trim().toLowerCase();
    let found = 0;
    for (const card of cards) {
      const hit = needle === '' || card.dataset.search.includes(needle);
      card.hidden = !hit;
      if (hit) found++;
    }
    for (const section of document.querySelectorAll('section.tier, section[data-section]')) {
      // "Recently opened" repeats cards of the tiers below: while searching, only the tiers show.
      section.hidden = section.dataset.section === 'recent' ? needle !== '' : !section.querySelector('li.card:not([hidden])');
    }
    status.textContent = needle === '' ? '' : `${found} of ${cards.length} apps match.`;
  });
}

// "Recently opened": a followed app link is reported to the portal in the background (a beacon,
// with the session's CSRF token), so the launcher can show it first next time. Serving the app
// itself stays free of it. Without scripts nothing is remembered; the link works all the same.
const tokenHolder = document.querySelector('[data-csrf]');
if (tokenHolder && typeof navigator.sendBeacon === 'function') {
  const remember = (event) => {
    const link = event.target instanceof Element ? event.target.closest('a[data-app]') : null;
    if (!link || (event.type === 'auxclick' && event.button !== 1)) return;
    navigator.sendBeacon('/recent-apps', new URLSearchParams({ _csrf: tokenHolder.dataset.csrf, app: link.dataset.app }));
  };
  document.addEventListener('click', remember);
  document.addEventListener('auxclick', remember);
}
