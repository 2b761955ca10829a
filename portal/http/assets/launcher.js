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
      section.hidden = !section.querySelector('li.card:not([hidden])');
    }
    status.textContent = needle === '' ? '' : `${found} of ${cards.length} apps match.`;
  });
}
