// Router and chrome: who is signed in, which sections their role may see.
import { loadSession, signOut } from './api.js';
import { el, alertBox } from './dom.js';
import { renderOverview } from './overview.js';
import { renderVerdicts } from './verdicts.js';
import { renderPacks } from './packs.js';
import { renderAudit } from './audit.js';

let visits = 0;
const pages = { overview: renderOverview, verdicts: renderVerdicts, packs: renderPacks, audit: renderAudit };

function allowed(link, role) {
  const need = link.dataset.role;
  return !need || need === role;
}

async function route(session) {
  const main = document.getElementById('main');
  const [name, ...rest] = (location.hash.replace(/^#\//, '') || 'overview').split('/');
  const link = document.querySelector(`#nav a[data-page="${name}"]`);
  if (!link || !allowed(link, session.role)) {
    location.hash = '#/overview';
    return;
  }
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a === link);
    if (a === link) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${link.textContent} · egressguard console`;
  // Each visit renders into its own element, shown only if it is still the latest:
  // a slow page finishing after a quick switch must not cover the new one.
  const visit = ++visits;
  const view = el('div', {});
  main.replaceChildren(el('p', {}, 'Loading…'));
  let shown = null;
  try {
    shown = await pages[name](view, session, rest.map(decodeURIComponent));
  } catch (e) {
    view.replaceChildren(alertBox('danger', `${e.code || 'ERROR'}: ${e.message}`));
  }
  if (visit !== visits) return;
  main.replaceChildren(view);
  if (typeof shown === 'function') shown();  // e.g. charts, which need their canvas on the page
  main.focus();
}

async function start() {
  const main = document.getElementById('main');
  const session = await loadSession();
  if (!session) {
    main.replaceChildren(el('h1', { class: 'h4' }, 'Not signed in'),
      el('p', {}, 'Ask an administrator on the store host for a sign-in link: ',
        el('code', {}, 'egressguard console login --user NAME --role officer|auditor')));
    return;
  }
  document.getElementById('who').textContent = `${session.user} (${session.role})`;
  for (const a of document.querySelectorAll('#nav a')) {
    if (!allowed(a, session.role)) a.parentElement.remove();
  }
  const out = document.getElementById('signout');
  out.hidden = false;
  out.addEventListener('click', async () => {
    await signOut();
    location.reload();
  });
  window.addEventListener('hashchange', () => route(session));
  route(session);
}

start();
