import { useEffect, useState } from 'preact/hooks';
import { ApiError, type Asset, type AssetFile, api, type Page } from './api.js';
import { endOfDay, startOfDay } from './dates.js';
import { mediaKind, placeholderStyle, thumbnailUrl } from './thumbnails.js';
import { Confirm, formatBytes, formatDate, Notice } from './ui.js';

const TYPES = [
  ['', 'Any type'],
  ['image/*', 'Images'],
  ['video/*', 'Video'],
  ['audio/*', 'Audio'],
  ['text/*', 'Text'],
  ['application/pdf', 'PDF'],
  ['application/*', 'Other (application/…)'],
] as const;

interface Filters {
  prefix: string;
  content_type: string;
  from: string;
  to: string;
}

const PAGE_SIZE = 24;

/** `canUpload`: whether the session's key may upload (else no shortcut to the Upload page). */
export function AssetsPage({ canUpload }: { canUpload: boolean }) {
  const [filters, setFilters] = useState<Filters>({ prefix: '', content_type: '', from: '', to: '' });
  const [view, setView] = useState<'grid' | 'list'>(
    () => (sessionStorage.getItem('wharf-view') as 'grid' | 'list' | null) ?? 'grid',
  );
  // Cursors of the pages before this one: "Previous" pops one.
  const [cursors, setCursors] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string | undefined>(undefined);
  const [page, setPage] = useState<Page<Asset> | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let live = true;
    setError(null);
    api
      .listAssets({
        limit: PAGE_SIZE,
        cursor,
        prefix: filters.prefix,
        content_type: filters.content_type,
        // Whole days, in the browser's time zone: "to" includes its day.
        created_after: filters.from ? startOfDay(filters.from) : undefined,
        created_before: filters.to ? endOfDay(filters.to) : undefined,
      })
      .then((p) => live && setPage(p))
      .catch((err) => live && setError(err));
    return () => {
      live = false;
    };
  }, [filters, cursor]);

  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    setCursors([]);
    setCursor(undefined);
    setFilters({
      prefix: String(form.get('prefix') ?? ''),
      content_type: String(form.get('content_type') ?? ''),
      from: String(form.get('from') ?? ''),
      to: String(form.get('to') ?? ''),
    });
  };
  const choose = (v: 'grid' | 'list') => {
    sessionStorage.setItem('wharf-view', v);
    setView(v);
  };

  return (
    <section aria-labelledby="assets-title">
      <h1 id="assets-title">Assets</h1>
      <form class="filters" onSubmit={apply} aria-label="Filter assets">
        <label>
          Name starts with
          <input name="prefix" type="search" defaultValue={filters.prefix} />
        </label>
        <label>
          Type
          <select name="content_type" defaultValue={filters.content_type}>
            {TYPES.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          From
          <input name="from" type="date" defaultValue={filters.from} />
        </label>
        <label>
          To
          <input name="to" type="date" defaultValue={filters.to} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <fieldset class="toolbar">
        <legend class="visually-hidden">View</legend>
        <button type="button" aria-pressed={view === 'grid'} onClick={() => choose('grid')}>
          Grid
        </button>
        <button type="button" aria-pressed={view === 'list'} onClick={() => choose('list')}>
          List
        </button>
        {canUpload && (
          <a class="button" href="#/upload">
            Upload files
          </a>
        )}
      </fieldset>
      <Notice error={error} />
      {page && page.data.length === 0 && <p>No assets match.</p>}
      {page && view === 'grid' && (
        <ul class="grid" aria-label="Assets">
          {page.data.map((asset) => (
            <li key={asset.id}>
              <a href={`#/assets/${asset.id}`} class="tile">
                <Thumb asset={asset} />
                <span class="name">{asset.name}</span>
                <span class="meta">{formatBytes(asset.size)}</span>
              </a>
            </li>
          ))}
        </ul>
      )}
      {page && view === 'list' && page.data.length > 0 && (
        <table class="list">
          <caption class="visually-hidden">Assets</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Size</th>
              <th scope="col">Created</th>
              <th scope="col">Access</th>
            </tr>
          </thead>
          <tbody>
            {page.data.map((asset) => (
              <tr key={asset.id}>
                <td>
                  <a href={`#/assets/${asset.id}`}>{asset.name}</a>
                </td>
                <td>{asset.content_type}</td>
                <td>{formatBytes(asset.size)}</td>
                <td>{formatDate(asset.created_at)}</td>
                <td>{asset.access}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager" aria-label="Pages">
        <button
          type="button"
          disabled={cursors.length === 0}
          onClick={() => {
            setCursor(cursors.at(-1));
            setCursors(cursors.slice(0, -1));
          }}
        >
          Previous page
        </button>
        <button
          type="button"
          disabled={!page?.next_cursor}
          onClick={() => {
            setCursors([...cursors, cursor]);
            setCursor(page!.next_cursor!);
          }}
        >
          Next page
        </button>
      </nav>
    </section>
  );
}

/** What a tile without a picture says: the name's extension, else the type's. */
function fileLabel(asset: Asset): string {
  const extension = /\.([A-Za-z0-9]{1,5})$/.exec(asset.name)?.[1];
  return (extension ?? asset.content_type.split('/')[1]?.split(/[+.;-]/)[0] ?? 'file').slice(0, 8);
}

function Thumb({ asset }: { asset: Asset }) {
  const src = thumbnailUrl(asset);
  // The placeholder goes once the picture is in: a transparent one would show it through.
  const [loaded, setLoaded] = useState(false);
  if (src) {
    return (
      <img
        src={src}
        alt=""
        loading="lazy"
        width={160}
        height={120}
        style={loaded ? undefined : placeholderStyle(asset)}
        onLoad={() => setLoaded(true)}
      />
    );
  }
  return (
    <span class="icon" aria-hidden="true">
      {fileLabel(asset)}
    </span>
  );
}

export function AssetPage({ id, onDeleted }: { id: string; onDeleted: () => void }) {
  const [asset, setAsset] = useState<Asset | null>(null);
  const [files, setFiles] = useState<AssetFile[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [link, setLink] = useState<{ url: string; expires_at: string } | null>(null);
  const [expiresIn, setExpiresIn] = useState(3600);
  const [confirming, setConfirming] = useState(false);
  // Deleted elsewhere (another tab, another client) since the page was loaded.
  const [gone, setGone] = useState(false);

  useEffect(() => {
    setGone(false);
    setAsset(null);
    setLink(null);
    setError(null);
    api.getAsset(id).then(setAsset, setError);
    api.assetFiles(id).then(
      (f) => setFiles(f.data),
      () => setFiles([]),
    );
  }, [id]);

  if (gone) {
    return (
      <section aria-labelledby="asset-title">
        <p>
          <a href="#/assets">← All assets</a>
        </p>
        <h1 id="asset-title">{asset?.name ?? 'Asset'}</h1>
        <p class="notice" role="status">
          This asset no longer exists: it was deleted elsewhere.
        </p>
      </section>
    );
  }
  if (!asset) {
    return (
      <section>
        <h1>Asset</h1>
        <Notice error={error}>{error ? null : 'Loading…'}</Notice>
      </section>
    );
  }
  const thumb = thumbnailUrl(asset);
  const media = mediaKind(asset);
  /** An action's failure; NOT_FOUND means the asset went since the page loaded, not that the action is wrong. */
  const failed = (err: unknown) => {
    if (err instanceof ApiError && err.code === 'NOT_FOUND') setGone(true);
    else setError(err);
  };
  const sign = async () => {
    setError(null);
    try {
      const signed = await api.signedUrl(asset.id, expiresIn);
      setLink(signed);
      await navigator.clipboard?.writeText(signed.url).then(
        () => setNotice('The signed link is copied.'),
        () => setNotice('The signed link is below: copy it from there.'),
      );
    } catch (err) {
      failed(err);
    }
  };
  const toggleAccess = async () => {
    setError(null);
    try {
      const access = asset.access === 'public' ? 'private' : 'public';
      // No asset comes back to a key that may change it but not read it (the page it would
      // need to be on shows assets it reads, so only if that changed meanwhile).
      setAsset((await api.setAccess(asset.id, access)) ?? { ...asset, access });
      setNotice('Access changed.');
    } catch (err) {
      failed(err);
    }
  };
  const remove = async () => {
    setConfirming(false);
    try {
      await api.deleteAsset(asset.id);
      onDeleted();
    } catch (err) {
      // Already deleted (in another tab, say): what the person asked for is done.
      if (err instanceof ApiError && err.code === 'NOT_FOUND') onDeleted();
      else setError(err);
    }
  };
  const location = asset.analysis.location;

  return (
    <section aria-labelledby="asset-title" class="asset">
      <p>
        <a href="#/assets">← All assets</a>
      </p>
      <h1 id="asset-title">{asset.name}</h1>
      <Notice error={error}>{notice}</Notice>
      <div class="asset-layout">
        <div class="preview">
          {thumb && <img src={thumb} alt={`Preview of ${asset.name}`} />}
          {!thumb && media === 'video' && (
            // biome-ignore lint/a11y/useMediaCaption: user uploads come without captions
            <video controls preload="metadata" src={api.contentUrl(asset.id)} />
          )}
          {!thumb && media === 'audio' && (
            // biome-ignore lint/a11y/useMediaCaption: user uploads come without captions
            <audio controls preload="metadata" src={api.contentUrl(asset.id)} />
          )}
          {!thumb && !media && <p class="no-preview">No preview for {asset.content_type}: download it.</p>}
          <p>
            <a class="button" href={api.contentUrl(asset.id, true)} download={asset.name}>
              Download
            </a>
          </p>
        </div>
        <dl class="facts">
          <dt>Type</dt>
          <dd>{asset.content_type}</dd>
          <dt>Size</dt>
          <dd>
            {formatBytes(asset.size)} ({asset.size} bytes)
          </dd>
          {asset.analysis.width !== undefined && (
            <>
              <dt>Dimensions</dt>
              <dd>
                {asset.analysis.width} × {asset.analysis.height}
              </dd>
            </>
          )}
          {location && (
            <>
              <dt>Location</dt>
              <dd>
                {location.latitude.toFixed(5)}, {location.longitude.toFixed(5)}
                {asset.analysis.location_name ? ` (${asset.analysis.location_name})` : ''}
              </dd>
            </>
          )}
          <dt>SHA-256</dt>
          <dd class="hash">{asset.sha256}</dd>
          <dt>MD5</dt>
          <dd class="hash">{asset.md5}</dd>
          <dt>Access</dt>
          <dd>{asset.access}</dd>
          <dt>Processing</dt>
          <dd>{asset.processing}</dd>
          <dt>Subject</dt>
          <dd>{asset.subject ?? '—'}</dd>
          <dt>Created</dt>
          <dd>{formatDate(asset.created_at)}</dd>
          <dt>Metadata</dt>
          <dd>
            <pre>{JSON.stringify(asset.metadata, null, 2)}</pre>
          </dd>
        </dl>
      </div>
      {files.length > 0 && (
        <section aria-labelledby="versions-title">
          <h2 id="versions-title">Versions</h2>
          {files.map((file) => (
            <div key={`${file.namespace}/${file.name}`}>
              <h3>
                {file.namespace}/{file.name}: version {file.version} of {file.latest_version}
              </h3>
              <ol>
                {file.versions.map((v) => (
                  <li key={v.version} value={v.version}>
                    {v.asset_id === asset.id ? (
                      <strong>version {v.version} (this one)</strong>
                    ) : (
                      <a href={`#/assets/${v.asset_id}`}>version {v.version}</a>
                    )}{' '}
                    — {formatDate(v.created_at)}
                  </li>
                ))}
              </ol>
            </div>
          ))}
        </section>
      )}
      <section aria-labelledby="actions-title" class="asset-actions">
        <h2 id="actions-title">Share and manage</h2>
        <div class="row">
          <label>
            Link valid for
            <select value={expiresIn} onChange={(e) => setExpiresIn(Number(e.currentTarget.value))}>
              <option value={3600}>1 hour</option>
              <option value={86400}>1 day</option>
              <option value={604800}>7 days</option>
            </select>
          </label>
          <button type="button" onClick={sign}>
            Copy signed link
          </button>
        </div>
        {link && (
          <label class="signed">
            Signed link (until {formatDate(link.expires_at)})
            <input readOnly value={link.url} onFocus={(e) => e.currentTarget.select()} />
          </label>
        )}
        <div class="row">
          <button type="button" onClick={toggleAccess}>
            {asset.access === 'public' ? 'Make private' : 'Make public'}
          </button>
          <button type="button" class="danger" onClick={() => setConfirming(true)}>
            Delete
          </button>
        </div>
      </section>
      <Confirm
        title="Delete this asset?"
        open={confirming}
        action="Delete for good"
        onConfirm={remove}
        onClose={() => setConfirming(false)}
      >
        <p>
          <strong>{asset.name}</strong> will be gone; its bytes are freed once nothing else refers to them.
        </p>
      </Confirm>
    </section>
  );
}
