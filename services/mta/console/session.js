// Who is logged in, in classroom mode, and the changes they make. A login is
// a cookie that no script of the page can read (HttpOnly) plus a CSRF token
// that the page keeps in memory only and sends with every change
// (X-CSRF-Token): a page of another site has neither. The credential goes in
// the body of one POST, never in an address.

let csrf; // from the login, or from /api/me after a reload

// An answer that is not 2xx, as an Error with the API's words; `status` and
// `retryAfter` (seconds, on 429) for the views that say more.
async function failure(response) {
  const body = await response.json().catch(() => undefined);
  const error = new Error(body?.error ?? `HTTP ${response.status}`);
  error.status = response.status;
  error.retryAfter = Number(response.headers.get('retry-after')) || undefined;
  return error;
}

// { classroom: false } without a class (the console as it always was);
// { classroom: true } when no one is logged in here; { classroom: true, me }
// with me = { role, student?, class } for the one logged in.
export async function whoAmI() {
  const response = await fetch('/api/me', { headers: { accept: 'application/json' } });
  if (response.status === 404) return { classroom: false };
  if (response.status === 401) return { classroom: true };
  if (!response.ok) throw await failure(response);
  const me = await response.json();
  csrf = me.csrf;
  return { classroom: true, me };
}

export async function logIn(credential) {
  const me = await send('POST', '/api/login', { credential });
  csrf = me.csrf;
  return me;
}

export async function logOut() {
  await send('POST', '/api/logout');
  csrf = undefined;
}

// A change: JSON both ways, with the login's CSRF token.
export async function send(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (csrf) headers['x-csrf-token'] = csrf;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw await failure(response);
  return response.json();
}
