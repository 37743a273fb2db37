// The web console's front end: Preact (which Uppy's Dashboard renders with already, so the UI
// costs no second framework), hash routes, and every call through ./api.ts.
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';
import './console.css';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { AccountPage, canAdminister, KeysPage, TokensPage, WebhookPage, WebhooksPage } from './admin.js';
import { ApiError, api, type Session, signedOutReason, whenSignedOut } from './api.js';
import { AssetPage, AssetsPage } from './assets.js';
import { errorText, Notice } from './ui.js';
import { canUpload, UploadPage } from './upload.js';

function useRoute(): string {
  const [route, setRoute] = useState(location.hash.replace(/^#/, '') || '/assets');
  useEffect(() => {
    const changed = () => setRoute(location.hash.replace(/^#/, '') || '/assets');
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
}

const NAV = [
  ['/assets', 'Assets'],
  ['/upload', 'Upload'],
  ['/keys', 'Keys'],
  ['/tokens', 'Upload tokens'],
  ['/webhooks', 'Webhooks'],
  ['/account', 'Account'],
] as const;

/** A route's id, or null when it is not valid percent-encoding (a link cut short or mistyped). */
function decodedId(encoded: string): string | null {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return null;
  }
}

function NoSuchPage() {
  return (
    <section aria-labelledby="missing-title">
      <h1 id="missing-title">No such page</h1>
      <p>
        This link is not one of the console's. <a href="#/assets">See the assets</a>
      </p>
    </section>
  );
}

function SignIn({ onSignedIn, reason }: { onSignedIn: (s: Session) => void; reason: string }) {
  const input = useRef<HTMLInputElement>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const field = input.current!;
    // The key leaves the page with this one request; the field is emptied at once and nothing
    // keeps it (the session cookie, which scripts cannot read, stands for it from now on).
    const key = field.value;
    field.value = '';
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await api.signIn(key));
    } catch (err) {
      setError(err);
      field.focus();
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <h1>Wharf console</h1>
      {reason && <p role="status">{reason}</p>}
      <form onSubmit={submit}>
        <label>
          API key
          <input
            ref={input}
            type="password"
            name="key"
            autocomplete="off"
            required
            autofocus
            spellcheck={false}
          />
        </label>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
      <Notice error={error} />
      <p class="hint">
        Sign in with a key of your account (<code>wharf_…</code>). The console keeps a session cookie, never
        the key.
      </p>
    </main>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [reason, setReason] = useState('');
  const [signOutError, setSignOutError] = useState<unknown>(null);
  const route = useRoute();
  const main = useRef<HTMLElement>(null);

  useEffect(() => {
    whenSignedOut((why) => {
      setSession(null);
      setReason(why ?? 'Your session ended (it expired or was signed out); sign in again.');
    });
    api.session().then(setSession, (err: unknown) => {
      setSession(null);
      if (err instanceof ApiError) setReason(signedOutReason(err) ?? '');
    });
  }, []);
  // A new page: focus goes to its heading, as a screen reader user expects. A heading takes
  // focus only with a tabindex (-1: focusable by script, not a Tab stop). A page that shows a
  // placeholder while it loads may replace its heading, and the focus goes with it: until the
  // person moves the focus, the heading that replaced it takes it.
  useEffect(() => {
    const region = main.current;
    if (!region) return;
    let focused: HTMLElement | null = null;
    const focusHeading = () => {
      focused = region.querySelector<HTMLElement>('h1');
      if (!focused) return;
      focused.tabIndex = -1;
      focused.focus();
    };
    focusHeading();
    // Only a heading that went, taking the focus with it: never pulls focus back otherwise.
    const observer = new MutationObserver(() => {
      if (focused && !focused.isConnected && document.activeElement === document.body) focusHeading();
    });
    observer.observe(region, { childList: true, subtree: true });
    const moved = (e: FocusEvent) => {
      if (e.target !== focused) observer.disconnect();
    };
    addEventListener('focusin', moved);
    return () => {
      observer.disconnect();
      removeEventListener('focusin', moved);
    };
  }, [route]);

  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null) {
    return (
      <SignIn
        reason={reason}
        onSignedIn={(s) => {
          setReason('');
          setSession(s);
        }}
      />
    );
  }
  const signOut = async () => {
    setSignOutError(null);
    try {
      await api.signOut();
    } catch (err) {
      // Signed out only when the server ended the session (or says it is already over): with
      // no answer, the session still lives on the server and the cookie still opens it.
      if (!(err instanceof ApiError && err.status === 401)) {
        setSignOutError(
          new Error(`Signing out failed, so the session is still open; try again. ${errorText(err)}`),
        );
        return;
      }
    }
    setReason('Signed out.');
    setSession(null);
  };
  const [, section, encodedId] = route.split('/');
  const id = encodedId && decodedId(encodedId);
  let page = <AssetsPage canUpload={canUpload(session)} />;
  if ((section === 'assets' || section === 'webhooks') && id === null) page = <NoSuchPage />;
  else if (section === 'assets' && id) {
    page = <AssetPage id={id} onDeleted={() => (location.hash = '#/assets')} />;
  } else if (section === 'upload') page = <UploadPage session={session} />;
  else if (section === 'keys')
    page = <KeysPage currentKeyId={session.key.id} canCreate={canAdminister(session)} />;
  else if (section === 'tokens') page = <TokensPage />;
  else if (section === 'webhooks' && id) page = <WebhookPage id={id} />;
  else if (section === 'webhooks') page = <WebhooksPage canCreate={canAdminister(session)} />;
  else if (section === 'account') page = <AccountPage canCancel={canUpload(session)} />;

  return (
    <>
      {/* A button, not a link: the hash is the console's route. */}
      <button type="button" class="skip" onClick={() => main.current?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <span class="brand">Wharf</span>
        <nav aria-label="Console">
          <ul>
            {NAV.map(([path, label]) => (
              <li key={path}>
                <a href={`#${path}`} aria-current={`/${section}` === path ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          {session.account.name} · {session.key.name}
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Notice error={signOutError} />
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
