// Verdicts: a filterable, paged table, and one verdict's detail with its findings
// (redacted evidence and fingerprints only: the store never holds the raw match).
import { call } from './api.js';
import { el, localTime, bytes, alertBox, table, field } from './dom.js';

const ACTIONS = ['', 'ALLOW', 'ALERT', 'BLOCK'];
const TEXT_FILTERS = [['host', 'Host'], ['category', 'Category'], ['client_address', 'Client'],
  ['workload', 'Workload'], ['rule_pack_version', 'Pack']];

function filterFromForm(form) {
  const f = {};
  for (const [key] of TEXT_FILTERS) {
    const v = form.elements[key].value.trim();
    if (v) f[key] = v;
  }
  if (form.elements.action.value) f.action = form.elements.action.value;
  // datetime-local is the browser's local time; the API takes RFC 3339 UTC.
  for (const key of ['since', 'until']) {
    const v = form.elements[key].value;
    if (v) f[key] = new Date(v).toISOString();
  }
  return f;
}

function detailView(v) {
  const findings = (v.findings || []).map((f) => el('section', { class: 'card mb-2' }, el('div', { class: 'card-body' },
    el('h3', { class: 'h6' }, `${f.rule_id} (${f.category}) × ${f.count || 0}`),
    el('p', { class: 'mb-1' }, 'Evidence (redacted): ', el('span', { class: 'mono evidence' }, f.evidence || '')),
    el('p', { class: 'mb-1' }, 'Fingerprint: ', el('span', { class: 'mono fingerprint' }, f.fingerprint || '')),
    (f.spans || []).length ? table(['Offsets', 'Member', 'Evidence', 'Fingerprint'], f.spans.map((s) => el('tr', {},
      el('td', {}, `${s.start || 0}–${s.end || 0}`), el('td', {}, s.member || ''),
      el('td', { class: 'mono' }, s.evidence || ''), el('td', { class: 'mono' }, s.fingerprint || '')))) : null)));
  const rows = [['Id', v.id], ['Time', localTime(v.time)], ['Action', v.action || 'ALLOW'], ['Why', v.reason || ''],
    ['Enforced', v.enforced ? 'yes' : 'no'], ['Client', v.client_address || ''], ['Workload', v.workload || ''],
    ['Destination', `${v.host || ''}:${v.port || ''}`], ['Request', `${v.method || ''} ${v.path || ''}`],
    ['Bytes out / in', `${bytes(v.bytes_out)} / ${bytes(v.bytes_in)}`], ['Rule pack', v.rule_pack_version || ''],
    ['Appliance', v.appliance || '']];
  return el('div', { id: 'verdict-detail' },
    el('dl', { class: 'row' }, rows.map(([k, val]) => [el('dt', { class: 'col-sm-2' }, k),
      el('dd', { class: 'col-sm-10 mono' }, val)])),
    el('h2', { class: 'h5' }, `Findings (${(v.findings || []).length})`), findings);
}

async function renderDetail(main, id) {
  const r = await call('VerdictQuery/Query', { filter: { id }, page_size: 1 });
  const v = (r.verdicts || [])[0];
  let mark = null;
  if (v) {
    const check = await call('VerdictQuery/VerifyVerdict', { id });
    mark = el('p', { id: 'chain-mark', class: check.verified ? 'text-success' : 'text-danger' },
      check.verified ? `✔ verified: the verdict chain (${check.verdicts_checked} verdicts) checks out with this one in it`
        : `✘ not verified: ${(check.problems || []).join('; ') || 'not in the chain'}`);
  }
  main.replaceChildren(el('a', { href: '#/verdicts', class: 'btn btn-link px-0' }, '← All verdicts'),
    el('h1', { class: 'h4' }, 'Verdict'), mark, v ? detailView(v) : alertBox('warning', `No verdict ${id}`));
}

export async function renderVerdicts(main, session, args) {
  if (args[0]) return renderDetail(main, args[0]);
  const form = el('form', { class: 'row g-2 align-items-end mb-3', id: 'verdict-filter' },
    field('Since', el('input', { type: 'datetime-local', name: 'since', class: 'form-control form-control-sm' })),
    field('Until', el('input', { type: 'datetime-local', name: 'until', class: 'form-control form-control-sm' })),
    field('Action', el('select', { name: 'action', class: 'form-select form-select-sm' },
      ACTIONS.map((a) => el('option', { value: a }, a || 'any')))),
    TEXT_FILTERS.map(([key, label]) => field(label, el('input', { name: key, class: 'form-control form-control-sm' }))),
    el('div', { class: 'col-auto' }, el('button', { class: 'btn btn-primary btn-sm', type: 'submit' }, 'Filter')));
  const body = el('div', {});
  const more = el('button', { class: 'btn btn-outline-secondary btn-sm', type: 'button', hidden: true }, 'Next page');
  let token = '';
  let filter = {};

  async function load(reset) {
    if (reset) { token = ''; body.replaceChildren(); }
    const r = await call('VerdictQuery/Query', { filter, page_size: 50, page_token: token });
    const rows = (r.verdicts || []).map((v) => {
      const open = () => { location.hash = `#/verdicts/${encodeURIComponent(v.id)}`; };
      return el('tr', { class: 'clickable', 'data-id': v.id },
        el('td', {}, localTime(v.time)), el('td', {}, v.action || 'ALLOW'), el('td', {}, v.host || ''),
        el('td', {}, `${v.method || ''} ${v.path || ''}`), el('td', {}, v.workload || ''),
        el('td', {}, v.client_address || ''),
        el('td', {}, [...new Set((v.findings || []).map((f) => f.category))].join(', ')),
        el('td', {}, bytes(v.bytes_out)),
        el('td', {}, el('a', { href: `#/verdicts/${encodeURIComponent(v.id)}`, class: 'open-verdict',
          onclick: (e) => { e.preventDefault(); open(); } }, 'Open')));
    });
    if (!body.firstChild) {
      body.append(table(['Time', 'Action', 'Host', 'Request', 'Workload', 'Client', 'Categories', 'Bytes out', ''],
        rows, { id: 'verdict-table' }));
    } else {
      body.querySelector('tbody').append(...rows);
    }
    if (!rows.length && reset) body.replaceChildren(alertBox('info', 'No verdicts match.'));
    token = r.next_page_token || '';
    more.hidden = !token;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    filter = filterFromForm(form);
    await load(true);
  });
  more.addEventListener('click', () => load(false));
  main.replaceChildren(el('h1', { class: 'h4' }, 'Verdicts'), form, body, more);
  await load(true);
}
