// Audit (auditors): the hash-chained trail, filterable, and `audit verify` on demand.
import { call } from './api.js';
import { el, localTime, alertBox, table, field } from './dom.js';

export async function renderAudit(main) {
  const form = el('form', { class: 'row g-2 align-items-end mb-3', id: 'audit-filter' },
    field('Actor', el('input', { name: 'actor', class: 'form-control form-control-sm' })),
    field('Method', el('input', { name: 'method', class: 'form-control form-control-sm' })),
    el('div', { class: 'col-auto form-check ms-2' },
      el('input', { type: 'checkbox', name: 'denied', id: 'audit-denied', class: 'form-check-input' }),
      el('label', { for: 'audit-denied', class: 'form-check-label' }, 'Refusals only')),
    el('div', { class: 'col-auto' }, el('button', { class: 'btn btn-primary btn-sm', type: 'submit' }, 'Filter')));
  const verifyOut = el('div', { id: 'verify-result', 'aria-live': 'polite' });
  const verify = el('button', { class: 'btn btn-outline-success btn-sm mb-3', type: 'button', id: 'verify-button' },
    'Verify both chains now');
  verify.addEventListener('click', async () => {
    verifyOut.replaceChildren(el('p', {}, 'Verifying…'));
    const r = await call('Audit/Verify', {});
    const text = `${r.ok ? 'Verified' : 'BROKEN'}: ${r.verdicts_checked || 0} verdicts, ${r.audit_checked || 0} audit records checked.`;
    verifyOut.replaceChildren(alertBox(r.ok ? 'success' : 'danger', text),
      (r.problems || []).length ? table(['Chain', 'Seq', 'Kind', 'Detail'], r.problems.map((p) => el('tr', {},
        el('td', {}, p.chain), el('td', {}, p.seq), el('td', {}, p.kind), el('td', {}, p.detail)))) : null);
  });
  const body = el('div', {});
  const more = el('button', { class: 'btn btn-outline-secondary btn-sm', type: 'button', hidden: true }, 'Next page');
  let after = 0;
  let filter = {};

  async function load(reset) {
    if (reset) { after = 0; body.replaceChildren(); }
    const r = await call('Audit/List', { ...filter, after_seq: after, limit: 100 });
    const records = r.records || [];
    const rows = records.map((a) => el('tr', { class: a.allowed ? '' : 'table-danger' },
      el('td', {}, a.seq), el('td', {}, localTime(a.time)), el('td', {}, a.actor), el('td', {}, a.role),
      el('td', { class: 'mono' }, a.method), el('td', {}, a.allowed ? 'yes' : 'refused'),
      el('td', {}, a.detail || ''), el('td', { class: 'mono' }, (a.hash || '').slice(0, 16))));
    if (!body.firstChild) {
      body.append(table(['Seq', 'Time', 'Actor', 'Role', 'Method', 'Allowed', 'Detail', 'Hash'], rows,
        { id: 'audit-table' }));
    } else {
      body.querySelector('tbody').append(...rows);
    }
    if (records.length) after = records[records.length - 1].seq;
    more.hidden = records.length < 100;
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    filter = {};
    if (form.elements.actor.value.trim()) filter.actor = form.elements.actor.value.trim();
    if (form.elements.method.value.trim()) filter.method = form.elements.method.value.trim();
    if (form.elements.denied.checked) filter.denied_only = true;
    await load(true);
  });
  more.addEventListener('click', () => load(false));
  main.replaceChildren(el('h1', { class: 'h4' }, 'Audit trail'), verify, verifyOut, form, body, more);
  await load(true);
}
