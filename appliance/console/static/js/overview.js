// Overview: verdicts and blocks per day, top categories and destinations, bytes out
// per workload (the FinOps view), store health and the active pack.
import { call, health } from './api.js';
import { el, bytes, alertBox, table } from './dom.js';

const charts = [];

function chart(canvas, type, labels, datasets, options = {}) {
  if (!window.Chart) return;  // libjs-chart.js missing: the tables below still carry the numbers
  charts.push(new window.Chart(canvas, {
    type,
    data: { labels, datasets },
    options: { responsive: true, maintainAspectRatio: false, animation: false, ...options },
  }));
}

function card(title, body) {
  return el('div', { class: 'col-lg-6 mb-3' },
    el('section', { class: 'card h-100', 'aria-label': title },
      el('div', { class: 'card-body' }, el('h2', { class: 'h6 card-title' }, title), body)));
}

function canvasBox(id, label) {
  return el('div', { class: 'chart-box' }, el('canvas', { id, role: 'img', 'aria-label': label }));
}

// The store groups by UTC day only; hours are one ACTION count per hour of the last 24.
async function lastDayByHour() {
  const end = new Date();
  end.setMinutes(0, 0, 0);
  end.setHours(end.getHours() + 1);
  const hours = [...Array(24).keys()].map((i) => new Date(end.getTime() - (24 - i) * 3600e3));
  const rows = await Promise.all(hours.map((h) => call('VerdictQuery/Stats', {
    group_by: 'ACTION',
    filter: { since: h.toISOString(), until: new Date(h.getTime() + 3600e3).toISOString() },
  }).then((r) => r.rows || [])));
  const sum = (rs, pred) => rs.filter(pred).reduce((n, r) => n + Number(r.verdicts || 0), 0);
  return {
    labels: hours.map((h) => h.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
    datasets: [
      { label: 'verdicts', data: rows.map((rs) => sum(rs, () => true)), backgroundColor: '#6c757d' },
      { label: 'blocked', data: rows.map((rs) => sum(rs, (r) => r.key === 'BLOCK')), backgroundColor: '#dc3545' },
    ],
  };
}

export async function renderOverview(main) {
  while (charts.length) charts.pop().destroy();
  const stats = (group_by, filter) => call('VerdictQuery/Stats', { group_by, filter }).then((r) => r.rows || []);
  const [byAction, byDay, blockedByDay, byCategory, byHost, byWorkload, h] = await Promise.all([
    stats('ACTION'), stats('DAY'), stats('DAY', { action: 'BLOCK' }), stats('CATEGORY'), stats('DESTINATION'),
    stats('WORKLOAD'), health(),
  ]);
  let active = null;
  try { active = await call('RuleAdmin/Get', {}); } catch (e) { if (e.status !== 404) throw e; }

  const total = byAction.reduce((n, r) => n + Number(r.verdicts || 0), 0);
  const blocked = byAction.filter((r) => r.key === 'BLOCK').reduce((n, r) => n + Number(r.verdicts || 0), 0);
  const bytesOut = byWorkload.reduce((n, r) => n + Number(r.bytes_out || 0), 0);
  const healthText = h ? Object.entries(h).map(([k, v]) => `${k}: ${v}`).join(' · ') : 'unknown';
  const healthy = h && Object.values(h).every((v) => v === 'ok');

  const days = byDay.map((r) => r.key).sort();
  const count = (rows, key) => Number((rows.find((r) => r.key === key) || {}).verdicts || 0);
  const topCategories = byCategory.filter((r) => r.key !== '').slice(0, 10);
  const topHosts = byHost.slice(0, 10);

  main.replaceChildren(
    el('h1', { class: 'h4 mb-3' }, 'Overview'),
    el('div', { class: 'row mb-3' },
      el('div', { class: 'col' }, el('div', { class: 'text-muted small' }, 'Verdicts'),
        el('div', { class: 'stat', id: 'total-verdicts' }, String(total))),
      el('div', { class: 'col' }, el('div', { class: 'text-muted small' }, 'Blocked'),
        el('div', { class: 'stat', id: 'total-blocked' }, String(blocked))),
      el('div', { class: 'col' }, el('div', { class: 'text-muted small' }, 'Bytes out'),
        el('div', { class: 'stat', id: 'total-bytes-out' }, bytes(bytesOut))),
      el('div', { class: 'col' }, el('div', { class: 'text-muted small' }, 'Active pack'),
        el('div', { class: 'stat', id: 'active-pack' },
          active ? `${active.info.version} (${active.info.mode || ''})` : 'none')),
      el('div', { class: 'col' }, el('div', { class: 'text-muted small' }, 'Store health'),
        el('div', { id: 'store-health', class: healthy ? 'text-success' : 'text-danger' }, healthText))),
    el('div', { class: 'row' },
      card('Verdicts and blocks over time', el('div', {},
        el('div', { class: 'mb-2' }, el('label', { for: 'time-scale', class: 'form-label small me-2' }, 'Show'),
          el('select', { id: 'time-scale', class: 'form-select form-select-sm d-inline-block w-auto' },
            el('option', { value: 'day' }, 'per day (UTC), all time'),
            el('option', { value: 'hour' }, 'per hour, last 24 hours (local time)'))),
        canvasBox('chart-days', 'Verdicts and blocks over time'))),
      card('Top categories', canvasBox('chart-categories', 'Verdicts per category')),
      card('Top destinations', canvasBox('chart-hosts', 'Verdicts per destination')),
      card('Bytes out per workload', el('div', {},
        canvasBox('chart-workloads', 'Bytes out per workload'),
        table(['Workload', 'Requests', 'Bytes out', 'Bytes in'], byWorkload.map((r) => el('tr', {},
          el('td', {}, r.key || '(unknown)'), el('td', {}, String(r.verdicts || 0)),
          el('td', {}, bytes(r.bytes_out)), el('td', {}, bytes(r.bytes_in)))), { id: 'workload-table' })))),
  );
  if (!window.Chart) main.prepend(alertBox('warning', 'Chart.js is not installed on the store host (libjs-chart.js).'));
  // Drawn once the view is on the page: Chart.js sizes itself from its canvas's box.
  const dayData = {
    labels: days,
    datasets: [
      { label: 'verdicts', data: days.map((d) => count(byDay, d)), backgroundColor: '#6c757d' },
      { label: 'blocked', data: days.map((d) => count(blockedByDay, d)), backgroundColor: '#dc3545' },
    ],
  };
  return () => {
    chart(main.querySelector('#chart-days'), 'bar', dayData.labels, dayData.datasets);
    main.querySelector('#time-scale').addEventListener('change', async (e) => {
      const c = window.Chart && window.Chart.getChart('chart-days');
      if (!c) return;
      const data = e.target.value === 'hour' ? await lastDayByHour() : dayData;
      c.data.labels = data.labels;
      c.data.datasets = data.datasets;
      c.update();
    });
    chart(main.querySelector('#chart-categories'), 'bar', topCategories.map((r) => r.key),
      [{ label: 'verdicts', data: topCategories.map((r) => Number(r.verdicts)), backgroundColor: '#0d6efd' }]);
    chart(main.querySelector('#chart-hosts'), 'bar', topHosts.map((r) => r.key),
      [{ label: 'verdicts', data: topHosts.map((r) => Number(r.verdicts)), backgroundColor: '#198754' }],
      { indexAxis: 'y' });
    chart(main.querySelector('#chart-workloads'), 'bar', byWorkload.map((r) => r.key || '(unknown)'),
      [{ label: 'bytes out', data: byWorkload.map((r) => Number(r.bytes_out || 0)), backgroundColor: '#fd7e14' }]);
  };
}
