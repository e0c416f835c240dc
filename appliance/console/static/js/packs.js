// Rule packs: versions, diff, and for officers validate, push, test against labelled
// samples, activate (or propose, under four-eyes) and approve another officer's proposal. Auditors get the lists only,
// as the API gives them.
import { call } from './api.js';
import { el, localTime, alertBox, table, field } from './dom.js';

function status(box, kind, text) { box.replaceChildren(alertBox(kind, text)); }

async function readPack(form) {
  const file = form.elements.packfile.files[0];
  const text = file ? await file.text() : form.elements.packtext.value;
  return JSON.parse(text);  // the protobuf JSON mapping of RulePack (YAML packs: `rules get` prints one)
}

// Sample files with their sidecars (`a.csv` and `a.csv.expect`, the `rules test`
// format), base64 for the JSON mapping of bytes.
async function readSamples(files) {
  const byName = new Map([...files].map((f) => [f.name, f]));
  const samples = [];
  for (const [name, file] of byName) {
    if (name.endsWith('.expect')) continue;
    const sidecar = byName.get(`${name}.expect`);
    if (!sidecar) throw new Error(`${name} has no sidecar ${name}.expect`);
    const raw = new Uint8Array(await file.arrayBuffer());
    let bin = '';
    for (let i = 0; i < raw.length; i += 0x8000) bin += String.fromCharCode(...raw.subarray(i, i + 0x8000));
    samples.push({ name, content: btoa(bin), expect: await sidecar.text() });
  }
  if (!samples.length) throw new Error('choose sample files and their .expect sidecars');
  return samples;
}

function scoreTable(title, scores, id) {
  return [el('h3', { class: 'h6 mt-2' }, title), table(['Category', 'TP', 'FP', 'FN', 'Precision', 'Recall'],
    (scores || []).map((s) => el('tr', { 'data-category': s.category }, el('td', {}, s.category),
      el('td', {}, String(s.true_positives || 0)), el('td', {}, String(s.false_positives || 0)),
      el('td', {}, String(s.false_negatives || 0)), el('td', {}, Number(s.precision || 0).toFixed(3)),
      el('td', {}, Number(s.recall || 0).toFixed(3)))), { id })];
}

function testTools(versions) {
  const out = el('div', { id: 'test-result', 'aria-live': 'polite' });
  const form = el('form', { class: 'row g-2 align-items-end mb-3', id: 'test-form' },
    field('Version', el('select', { name: 'version', class: 'form-select form-select-sm version-select' },
      versions.map((v) => el('option', { value: v }, v)))),
    field('Samples and their .expect sidecars', el('input', { type: 'file', name: 'samples', multiple: true,
      class: 'form-control form-control-sm' })),
    el('div', { class: 'col-auto' },
      el('button', { class: 'btn btn-outline-primary btn-sm', type: 'submit', id: 'test-button' }, 'Test')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await call('RuleAdmin/Test', { version: form.elements.version.value,
        samples: await readSamples(form.elements.samples.files) });
      const misses = [...(r.file_mismatches || []), ...(r.occurrence_mismatches || [])];
      out.replaceChildren(alertBox(r.ok ? 'success' : 'warning', r.ok
        ? `${r.samples} samples: every category at or above the minimum.`
        : `${r.samples} samples: below the minimum: ${(r.below || []).join('; ')}`),
      ...scoreTable('Per file', r.per_file, 'test-per-file'),
      ...(r.per_occurrence ? scoreTable(`Per occurrence (${r.located} located)`, r.per_occurrence,
        'test-per-occurrence') : []),
      misses.length ? el('ul', { class: 'small' }, misses.map((m) =>
        el('li', {}, `${m.missed ? 'missed' : 'false'} ${m.category}: ${m.sample}${m.where ? `:${m.where}` : ''}`)))
        : '');
    } catch (err) { status(out, 'danger', err.message); }
  });
  return [el('h2', { class: 'h5 mt-3' }, 'Test against samples'), form, out];
}

function officerTools(versions, refresh) {
  const out = el('div', { id: 'pack-result', 'aria-live': 'polite' });
  const push = el('form', { class: 'row g-2 align-items-end mb-3', id: 'push-form' },
    field('Pack file (RulePack JSON)', el('input', { type: 'file', name: 'packfile', accept: '.json,application/json',
      class: 'form-control form-control-sm' })),
    field('or paste it', el('textarea', { name: 'packtext', rows: 2, cols: 40, class: 'form-control form-control-sm' })),
    field('Reason', el('input', { name: 'reason', class: 'form-control form-control-sm' })),
    el('div', { class: 'col-auto' },
      el('button', { class: 'btn btn-outline-primary btn-sm me-1', type: 'button', id: 'validate-button',
        onclick: async () => {
          try {
            const r = await call('RuleAdmin/Validate', { pack: await readPack(push) });
            status(out, r.ok ? 'success' : 'warning', r.ok ? 'The pack compiles.' : (r.errors || []).join('; '));
          } catch (e) { status(out, 'danger', e.message); }
        } }, 'Validate'),
      el('button', { class: 'btn btn-primary btn-sm', type: 'submit', id: 'push-button' }, 'Push')));
  push.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const info = await call('RuleAdmin/Push', { pack: await readPack(push), reason: push.elements.reason.value });
      status(out, 'success', `Pushed ${info.version} (${info.rule_count || 0} rules).`);
      await refresh();
    } catch (err) { status(out, 'danger', err.message); }
  });
  const activate = el('form', { class: 'row g-2 align-items-end mb-3', id: 'activate-form' },
    field('Version', el('select', { name: 'version', class: 'form-select form-select-sm version-select' },
      versions.map((v) => el('option', { value: v }, v)))),
    field('Mode', el('select', { name: 'mode', class: 'form-select form-select-sm' },
      el('option', { value: 'ENFORCE' }, 'enforce'), el('option', { value: 'MONITOR' }, 'monitor'))),
    field('Reason', el('input', { name: 'reason', class: 'form-control form-control-sm' })),
    el('div', { class: 'col-auto' },
      el('button', { class: 'btn btn-warning btn-sm me-1', type: 'submit', id: 'activate-button' }, 'Activate'),
      el('button', { class: 'btn btn-outline-warning btn-sm', type: 'button', id: 'rollback-button',
        onclick: async () => {
          try {
            const info = await call('RuleAdmin/Rollback',
              { to_version: activate.elements.version.value, reason: activate.elements.reason.value });
            status(out, 'success', `Rolled back to ${info.version}.`);
          } catch (err) { status(out, err.status === 409 ? 'warning' : 'danger', err.message); }
          await refresh();
        } }, 'Roll back to it')));
  activate.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const info = await call('RuleAdmin/Activate', { version: activate.elements.version.value,
        mode: activate.elements.mode.value, reason: activate.elements.reason.value });
      status(out, 'success', `Active: ${info.version}.`);
    } catch (err) { status(out, err.status === 409 ? 'warning' : 'danger', err.message); }
    await refresh();
  });
  return [el('h2', { class: 'h5 mt-3' }, 'Push a pack'), push, el('h2', { class: 'h5' }, 'Activate or roll back'),
    activate, out, ...testTools(versions)];
}

export async function renderPacks(main, session) {
  const officer = session.role === 'officer';
  const listBox = el('div', {});
  const proposalsBox = el('div', {});
  const approvalResult = el('div', { id: 'approval-result', 'aria-live': 'polite' });
  const diffOut = el('div', { id: 'diff-result' });
  let versions = [];

  async function refresh() {
    const [list, proposals] = await Promise.all([call('RuleAdmin/List', {}), call('RuleAdmin/ListProposals', {})]);
    const packs = list.packs || [];
    versions = packs.map((p) => p.version);
    listBox.replaceChildren(table(['Version', 'State', 'Mode', 'Rules', 'Author', 'Pushed', 'Reason'],
      packs.map((p) => el('tr', { 'data-version': p.version }, el('td', {}, p.version), el('td', {}, p.state || ''),
        el('td', {}, p.state === 'ACTIVE' ? (p.mode || '') : ''), el('td', {}, String(p.rule_count || 0)),
        el('td', {}, p.author || ''), el('td', {}, localTime(p.pushed_at)), el('td', {}, p.reason || ''))),
      { id: 'pack-table' }));
    // Selects built from an older list (before a push) learn the new versions.
    for (const select of main.querySelectorAll('select.version-select')) {
      const chosen = select.value;
      select.replaceChildren(...versions.map((v) => el('option', { value: v }, v)));
      if (versions.includes(chosen)) select.value = chosen;
    }
    const pending = proposals.proposals || [];
    proposalsBox.replaceChildren(
      el('h2', { class: 'h5 mt-3' }, `Waiting for approval (${proposals.approvals_required || 1} officer(s) needed)`),
      pending.length ? table(['Change', 'Proposed by', 'Proposed', 'Expires', 'Reason', ''],
        pending.map((p) => el('tr', { 'data-proposal': p.version },
          el('td', {}, p.kind === 'ROLLBACK' ? `roll back to ${p.version}` : `activate ${p.version} (${p.mode})`),
          el('td', {}, p.proposer), el('td', {}, localTime(p.proposed_at)), el('td', {}, localTime(p.expires_at)),
          el('td', {}, p.reason || ''),
          el('td', {}, officer && p.proposer !== `console:${session.user}` ? el('button', {
            class: 'btn btn-success btn-sm approve-button', type: 'button', 'data-version': p.version,
            onclick: async () => {
              try {
                const info = await call('RuleAdmin/Approve', { version: p.version });
                approvalResult.replaceChildren(alertBox('success', `Approved: ${info.version} is active.`));
              } catch (e) { approvalResult.replaceChildren(alertBox('danger', e.message)); }
              await refresh();
            } }, 'Approve') : ''))), { id: 'proposal-table' })
        : el('p', { class: 'text-muted' }, 'None.'));
  }
  await refresh();

  const diff = el('form', { class: 'row g-2 align-items-end mb-2', id: 'diff-form' },
    field('From', el('select', { name: 'from', class: 'form-select form-select-sm version-select' },
      versions.map((v) => el('option', { value: v }, v)))),
    field('To', el('select', { name: 'to', class: 'form-select form-select-sm version-select' },
      versions.map((v) => el('option', { value: v }, v)))),
    el('div', { class: 'col-auto' }, el('button', { class: 'btn btn-outline-secondary btn-sm', type: 'submit' }, 'Diff')));
  diff.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await call('RuleAdmin/Diff', { from_version: diff.elements.from.value, to_version: diff.elements.to.value });
    const lines = [...(r.pack_fields || []).map((f) => `~ pack.${f}`),
      ...(r.changes || []).map((c) => `${c.kind === 'ADDED' ? '+' : c.kind === 'REMOVED' ? '-' : '~'} ${c.rule_id}` +
        ((c.fields || []).length ? ` (${c.fields.join(', ')})` : ''))];
    diffOut.replaceChildren(lines.length ? el('pre', { class: 'mono' }, lines.join('\n'))
      : el('p', { class: 'text-muted' }, 'The two versions are the same.'));
  });

  main.replaceChildren(el('h1', { class: 'h4' }, 'Rule packs'), listBox, proposalsBox, approvalResult,
    el("h2", { class: "h5 mt-3" }, "Diff"), diff, diffOut, ...(officer ? officerTools(versions, refresh) : []));
}
