// The console's only way to data: the JSON API, with the session's CSRF token.
let session = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function loadSession() {
  const r = await fetch('/api/v1/session', { credentials: 'same-origin' });
  if (r.status === 401) return null;
  session = await r.json();
  return session;
}

export function currentSession() { return session; }

async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session ? session.csrf_token : '' },
    body: JSON.stringify(body || {}),
  });
  let json = {};
  try { json = await r.json(); } catch (e) { json = { code: 'BAD_RESPONSE', message: String(e) }; }
  if (!r.ok) throw new ApiError(r.status, json.code, json.message);
  return json;
}

// method: "Service/Method", e.g. "VerdictQuery/Stats"; request: the protobuf JSON mapping.
export function call(method, request) { return post(`/api/v1/${method}`, request); }

export function signOut() { return post('/api/v1/session/logout', {}); }

export async function health() {
  const r = await fetch('/api/v1/health', { credentials: 'same-origin' });
  return r.ok ? r.json() : null;
}
