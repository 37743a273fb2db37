import { useEffect, useState } from 'preact/hooks';
import {
  type Account,
  type ApiKey,
  api,
  type Delivery,
  type Session,
  type UploadState,
  type UploadToken,
  type Webhook,
  type WharfEvent,
} from './api.js';
import { Confirm, Dialog, formatBytes, formatDate, Notice, Secret } from './ui.js';

const SCOPES = ['admin', 'read', 'upload', 'write'] as const;

/** Whether the session's key may create keys and webhook endpoints (the server asks for `admin`). */
export function canAdminister(session: Session): boolean {
  return session.key.scopes.includes('admin');
}

export function KeysPage({ currentKeyId, canCreate }: { currentKeyId: string; canCreate: boolean }) {
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);
  // A refusal of the dialog's form is shown in the dialog: the page behind the modal is hidden.
  const [createError, setCreateError] = useState<unknown>(null);
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const load = () =>
    api.listKeys().then((p) => {
      setKeys(p.data);
      setNext(p.next_cursor);
    }, setError);
  useEffect(() => {
    void load();
  }, []);
  const more = async () => {
    try {
      const p = await api.listKeys(next!);
      setKeys([...(keys ?? []), ...p.data]);
      setNext(p.next_cursor);
    } catch (err) {
      setError(err);
    }
  };

  const create = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const scopes = SCOPES.filter((s) => form.get(`scope-${s}`) === 'on');
    try {
      const made = await api.createKey({
        name: String(form.get('name')),
        scopes,
        ...(form.get('name_prefix') ? { name_prefix: String(form.get('name_prefix')) } : {}),
        ...(form.get('namespace') ? { namespace: String(form.get('namespace')) } : {}),
      });
      setCreating(false);
      setCreateError(null);
      setCreated({ name: made.key.name, secret: made.secret });
      await load();
    } catch (err) {
      setCreateError(err);
    }
  };
  const closeCreate = () => {
    setCreating(false);
    setCreateError(null);
  };
  const revoke = async () => {
    const key = revoking!;
    setRevoking(null);
    try {
      await api.revokeKey(key.id);
      await load();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <section aria-labelledby="keys-title">
      <h1 id="keys-title">API keys</h1>
      <Notice error={error} />
      {/* A key that is not admin would only be refused (403 FORBIDDEN): it is offered no button. */}
      {canCreate && (
        <button type="button" onClick={() => setCreating(true)}>
          New key
        </button>
      )}
      {keys && (
        <table class="list">
          <caption class="visually-hidden">API keys</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Scopes</th>
              <th scope="col">Key</th>
              <th scope="col">Last used</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((key) => (
              <tr key={key.id}>
                <td>
                  {key.name}
                  {key.id === currentKeyId ? ' (this session)' : ''}
                </td>
                <td>
                  {key.scopes.join(', ')}
                  {key.name_prefix ? `; names ${key.name_prefix}…` : ''}
                  {key.namespace ? `; namespace ${key.namespace}` : ''}
                </td>
                <td>
                  <code>{key.prefix}…</code>
                </td>
                <td>{formatDate(key.last_used_at)}</td>
                <td>
                  {key.revoked_at ? (
                    `revoked ${formatDate(key.revoked_at)}`
                  ) : (
                    <button type="button" class="danger" onClick={() => setRevoking(key)}>
                      Revoke <span class="visually-hidden">{key.name}</span>
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button type="button" onClick={more}>
          More keys
        </button>
      )}
      <Dialog title="New API key" open={creating} onClose={closeCreate}>
        <form onSubmit={create}>
          <Notice error={createError} />
          <label>
            Name
            <input name="name" required maxLength={200} autofocus />
          </label>
          <fieldset>
            <legend>Scopes</legend>
            {SCOPES.map((scope) => (
              <label key={scope} class="check">
                <input type="checkbox" name={`scope-${scope}`} defaultChecked={scope !== 'admin'} /> {scope}
              </label>
            ))}
          </fieldset>
          <label>
            Name prefix (optional)
            <input name="name_prefix" />
          </label>
          <label>
            Namespace (optional)
            <input name="namespace" />
          </label>
          <div class="actions">
            <button type="submit">Create key</button>
            <button type="button" onClick={closeCreate}>
              Cancel
            </button>
          </div>
        </form>
      </Dialog>
      <Dialog title="Key created" open={created !== null} onClose={() => setCreated(null)}>
        {created && <Secret label={`Secret of “${created.name}”`} value={created.secret} />}
        <div class="actions">
          <button type="button" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      </Dialog>
      <Confirm
        title="Revoke this key?"
        open={revoking !== null}
        action="Revoke"
        onConfirm={revoke}
        onClose={() => setRevoking(null)}
      >
        <p>
          Every request with <strong>{revoking?.name}</strong> is refused from now on, its upload tokens and
          console sessions too.
        </p>
      </Confirm>
    </section>
  );
}

export function TokensPage() {
  const [tokens, setTokens] = useState<UploadToken[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [revoking, setRevoking] = useState<UploadToken | null>(null);
  const load = () =>
    api.listTokens().then((p) => {
      setTokens(p.data);
      setNext(p.next_cursor);
    }, setError);
  useEffect(() => {
    void load();
  }, []);
  const more = async () => {
    const p = await api.listTokens(next!);
    setTokens([...(tokens ?? []), ...p.data]);
    setNext(p.next_cursor);
  };
  const revoke = async () => {
    const token = revoking!;
    setRevoking(null);
    try {
      await api.revokeToken(token.id);
      await load();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section aria-labelledby="tokens-title">
      <h1 id="tokens-title">Upload tokens</h1>
      <Notice error={error} />
      {tokens && tokens.length === 0 && <p>No upload tokens yet.</p>}
      {tokens && tokens.length > 0 && (
        <table class="list">
          <caption class="visually-hidden">Upload tokens</caption>
          <thead>
            <tr>
              <th scope="col">Token</th>
              <th scope="col">Subject</th>
              <th scope="col">Used</th>
              <th scope="col">Expires</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((token) => (
              <tr key={token.id}>
                <td>
                  <code>{token.prefix}…</code>
                </td>
                <td>{token.subject ?? '—'}</td>
                <td>
                  {token.usage.files_used}
                  {token.max_files !== null ? ` of ${token.max_files}` : ''} files,{' '}
                  {formatBytes(token.usage.bytes_used)}
                  {token.usage.files_reserved > 0 ? ` (${token.usage.files_reserved} pending)` : ''}
                </td>
                <td>{formatDate(token.expires_at)}</td>
                <td>
                  {token.status}{' '}
                  {token.status === 'active' && (
                    <button type="button" class="danger" onClick={() => setRevoking(token)}>
                      Revoke <span class="visually-hidden">{token.prefix}</span>
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button type="button" onClick={more}>
          More tokens
        </button>
      )}
      <Confirm
        title="Revoke this upload token?"
        open={revoking !== null}
        action="Revoke"
        onConfirm={revoke}
        onClose={() => setRevoking(null)}
      >
        <p>
          Uploads with <code>{revoking?.prefix}…</code> are refused from now on.
        </p>
      </Confirm>
    </section>
  );
}

export function WebhooksPage({ canCreate }: { canCreate: boolean }) {
  const [hooks, setHooks] = useState<Webhook[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);
  // A refusal of the dialog's form is shown in the dialog: the page behind the modal is hidden.
  const [createError, setCreateError] = useState<unknown>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const load = () => api.listWebhooks().then((w) => setHooks(w.data), setError);
  useEffect(() => {
    void load();
  }, []);
  const create = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const types = String(form.get('event_types') ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    try {
      const made = await api.createWebhook({
        url: String(form.get('url')),
        description: String(form.get('description') ?? ''),
        ...(types.length > 0 && { event_types: types }),
      });
      setCreating(false);
      setCreateError(null);
      setSecret(made.secret);
      await load();
    } catch (err) {
      setCreateError(err);
    }
  };
  const closeCreate = () => {
    setCreating(false);
    setCreateError(null);
  };
  const toggle = async (hook: Webhook) => {
    try {
      await api.updateWebhook(hook.id, { enabled: !hook.enabled });
      await load();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section aria-labelledby="webhooks-title">
      <h1 id="webhooks-title">Webhooks</h1>
      <Notice error={error} />
      {canCreate && (
        <button type="button" onClick={() => setCreating(true)}>
          New endpoint
        </button>
      )}
      {hooks && hooks.length === 0 && <p>No endpoints yet.</p>}
      <ul class="cards">
        {hooks?.map((hook) => (
          <li key={hook.id}>
            <a href={`#/webhooks/${hook.id}`}>{hook.url}</a>
            <span>{hook.description}</span>
            <span>{hook.event_types.length > 0 ? hook.event_types.join(', ') : 'every event'}</span>
            <span>
              {hook.enabled
                ? 'enabled'
                : `disabled${hook.disabled_reason ? ` (${hook.disabled_reason})` : ''}`}
            </span>
            <button type="button" onClick={() => toggle(hook)}>
              {hook.enabled ? 'Disable' : 'Enable'} <span class="visually-hidden">{hook.url}</span>
            </button>
          </li>
        ))}
      </ul>
      <Dialog title="New webhook endpoint" open={creating} onClose={closeCreate}>
        <form onSubmit={create}>
          <Notice error={createError} />
          <label>
            URL
            <input name="url" type="url" required autofocus />
          </label>
          <label>
            Event types (comma-separated; empty for all)
            <input name="event_types" placeholder="upload.completed, asset.*" />
          </label>
          <label>
            Description
            <input name="description" />
          </label>
          <div class="actions">
            <button type="submit">Create endpoint</button>
            <button type="button" onClick={closeCreate}>
              Cancel
            </button>
          </div>
        </form>
      </Dialog>
      <Dialog title="Signing secret" open={secret !== null} onClose={() => setSecret(null)}>
        {secret && (
          <Secret
            label="The endpoint's signing secret"
            value={secret}
            note="Verify deliveries with it (Standard Webhooks); an admin can read it again through the API."
          />
        )}
        <div class="actions">
          <button type="button" onClick={() => setSecret(null)}>
            Done
          </button>
        </div>
      </Dialog>
    </section>
  );
}

export function WebhookPage({ id }: { id: string }) {
  const [deliveries, setDeliveries] = useState<Delivery[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const load = () =>
    api.listDeliveries(id).then((p) => {
      setDeliveries(p.data);
      setNext(p.next_cursor);
    }, setError);
  useEffect(() => {
    void load();
  }, [id]);
  const replay = async (delivery: Delivery) => {
    try {
      await api.replayDelivery(id, delivery.id);
      setNotice(`Delivery of ${delivery.event_type} queued again.`);
      await load();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section aria-labelledby="deliveries-title">
      <p>
        <a href="#/webhooks">← All endpoints</a>
      </p>
      <h1 id="deliveries-title">Delivery log</h1>
      <Notice error={error}>{notice}</Notice>
      <button type="button" onClick={() => void load()}>
        Refresh
      </button>
      {deliveries && deliveries.length === 0 && <p>Nothing delivered yet.</p>}
      {deliveries && deliveries.length > 0 && (
        <table class="list">
          <caption class="visually-hidden">Deliveries</caption>
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts</th>
              <th scope="col">Answer</th>
              <th scope="col">Last attempt</th>
              <th scope="col">Replay</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.map((d) => (
              <tr key={d.id}>
                <td>{d.event_type}</td>
                <td>{d.status}</td>
                <td>{d.attempts}</td>
                <td>
                  {d.response_status ?? '—'}
                  {d.last_error ? ` ${d.last_error}` : ''}
                  {d.latency_ms !== null ? ` (${d.latency_ms} ms)` : ''}
                </td>
                <td>{formatDate(d.last_attempt_at)}</td>
                <td>
                  <button type="button" onClick={() => replay(d)} disabled={d.event_id === null}>
                    Replay <span class="visually-hidden">{d.event_type}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button
          type="button"
          onClick={async () => {
            const p = await api.listDeliveries(id, next);
            setDeliveries([...(deliveries ?? []), ...p.data]);
            setNext(p.next_cursor);
          }}
        >
          Older deliveries
        </button>
      )}
    </section>
  );
}

/**
 * `canCancel`: whether the session's key may cancel uploads (the `upload` scope, or `admin`). An
 * upload the page abandoned (reloaded or closed mid-upload: the console keeps nothing to resume
 * it with) holds its bytes against the quota until it expires; cancelling gives them back now.
 */
export function AccountPage({ canCancel }: { canCancel: boolean }) {
  const [account, setAccount] = useState<Account | null>(null);
  const [pending, setPending] = useState<UploadState[] | null>(null);
  const [failed, setFailed] = useState<WharfEvent[] | null>(null);
  // Each section its own refusal: a confined key may read one and be refused another.
  const [accountError, setAccountError] = useState<unknown>(null);
  const [pendingError, setPendingError] = useState<unknown>(null);
  const [failedError, setFailedError] = useState<unknown>(null);
  const [cancelling, setCancelling] = useState<UploadState | null>(null);
  const loadUsage = () => {
    api.account().then(setAccount, setAccountError);
    api.listUploads('pending').then((p) => setPending(p.data), setPendingError);
  };
  useEffect(() => {
    loadUsage();
    api.failedUploads().then(setFailed, setFailedError);
  }, []);
  const cancel = async () => {
    const upload = cancelling!;
    setCancelling(null);
    try {
      await api.cancelUpload(upload.id);
      setPendingError(null);
    } catch (err) {
      setPendingError(err);
    }
    loadUsage();
  };
  const quota = account?.storage_quota ?? null;
  const used = account ? account.usage.bytes_used + account.usage.bytes_reserved : 0;
  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Account</h1>
      <Notice error={accountError} />
      {account && (
        <dl class="facts">
          <dt>Account</dt>
          <dd>
            {account.name} (<code>{account.id}</code>)
          </dd>
          <dt>Stored</dt>
          <dd>
            {formatBytes(account.usage.bytes_used)} in {account.usage.assets} assets
          </dd>
          <dt>Held by pending uploads</dt>
          <dd>{formatBytes(account.usage.bytes_reserved)}</dd>
          <dt>Quota</dt>
          <dd>
            {quota === null ? (
              'no quota'
            ) : (
              <>
                <meter min={0} max={quota} value={used} aria-label="Quota used" /> {formatBytes(used)} of{' '}
                {formatBytes(quota)} ({formatBytes(account.usage.bytes_free)} free)
              </>
            )}
          </dd>
          <dt>Largest file</dt>
          <dd>
            {account.max_file_size === null ? 'the server’s limit' : formatBytes(account.max_file_size)}
          </dd>
        </dl>
      )}
      <h2>Pending uploads</h2>
      <Notice error={pendingError} />
      {pending && pending.length === 0 && <p>None.</p>}
      {pending && pending.length > 0 && (
        <table class="list">
          <caption class="visually-hidden">Pending uploads</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Flow</th>
              <th scope="col">Size</th>
              <th scope="col">Started</th>
              <th scope="col">Expires</th>
              {canCancel && <th scope="col">Cancel</th>}
            </tr>
          </thead>
          <tbody>
            {pending.map((u) => (
              <tr key={u.id}>
                <td>{u.name}</td>
                <td>{u.kind}</td>
                <td>{formatBytes(u.size)}</td>
                <td>{formatDate(u.created_at)}</td>
                <td>{formatDate(u.expires_at)}</td>
                {canCancel && (
                  <td>
                    <button type="button" class="danger" onClick={() => setCancelling(u)}>
                      Cancel <span class="visually-hidden">{u.name}</span>
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Confirm
        title="Cancel this upload?"
        open={cancelling !== null}
        action="Cancel upload"
        onConfirm={cancel}
        onClose={() => setCancelling(null)}
      >
        <p>
          <strong>{cancelling?.name}</strong> ends now and can no longer complete: what it sent is removed and
          what it holds against the quota is given back.
        </p>
      </Confirm>
      <h2>Failed uploads</h2>
      <Notice error={failedError} />
      {failed && failed.length === 0 && <p>None.</p>}
      {failed && failed.length > 0 && (
        <table class="list">
          <caption class="visually-hidden">Failed uploads</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Flow</th>
              <th scope="col">Why</th>
              <th scope="col">When</th>
            </tr>
          </thead>
          <tbody>
            {failed.map((e) => (
              <tr key={e.id}>
                <td>{e.data.upload?.name}</td>
                <td>{e.data.upload?.kind}</td>
                <td>
                  <code>{e.data.error?.code}</code> {e.data.error?.message}
                </td>
                <td>{formatDate(e.timestamp)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
