// The login screen of a classroom lab: one field for the credential the
// teacher handed out. It takes the place of the console until someone logs
// in; then loggedIn(me) starts the console, scoped by the server to them.
import { h } from './dom.js';
import { logIn } from './session.js';

export function showLogin(loggedIn, notice) {
  const layout = document.querySelector('.layout');
  layout.hidden = true;
  const input = h('input', { id: 'credential', type: 'password', autocomplete: 'current-password', spellcheck: 'false', required: true, 'aria-describedby': 'credential-hint' });
  const button = h('button', { type: 'submit' }, 'Log in');
  const message = h('p', { class: 'login-message', role: 'alert' });
  const form = h(
    'form',
    { class: 'login-box', 'aria-labelledby': 'login-title' },
    h('h2', { id: 'login-title' }, 'Log in'),
    notice ? h('p', { class: 'muted' }, notice) : '',
    h('label', { for: 'credential' }, 'Your credential'),
    h('p', { id: 'credential-hint', class: 'muted small' }, 'The one your teacher gave you, like ana-XFbgD2yJaUs6AXJmfzdf. It is sent to this lab only, in the body of the request.'),
    input,
    button,
    message,
  );
  const screen = h('main', { class: 'login', id: 'login' }, form);
  document.getElementById('login')?.remove();
  layout.after(screen);

  // Never a real form submission (the page's policy forbids them anyway):
  // the credential goes to POST /api/login as JSON.
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const credential = input.value.trim();
    if (!credential) return;
    button.disabled = true;
    message.replaceChildren();
    try {
      const me = await logIn(credential);
      screen.remove();
      layout.hidden = false;
      loggedIn(me);
    } catch (error) {
      message.replaceChildren(h('span', { class: 'error' }, '⚠ ', explain(error)));
      input.select();
      if (error.status === 429 && error.retryAfter) setTimeout(() => (button.disabled = false), error.retryAfter * 1000);
      else button.disabled = false;
    }
  });
  input.focus();
}

function explain(error) {
  if (error.status === 401) return `Wrong credential: ${error.message.replace(/^log in: /, '')}.`;
  if (error.status === 429) return `Too many attempts: wait ${error.retryAfter ? `${error.retryAfter} s` : 'a few minutes'}, then try again.`;
  return error.message;
}
