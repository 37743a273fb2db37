import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import Tus from '@uppy/tus';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Session } from './api.js';
import { errorText, Notice } from './ui.js';
import { uploadErrorText } from './upload-errors.js';

/** tus chunks: several requests per large file, so a cut loses at most one chunk's resend. */
const CHUNK_SIZE = 5 * 1024 * 1024;

/** A file's upload token is reused by its retries while it has at least this long to live. */
const TOKEN_MARGIN_MS = 10 * 60_000;

/** Whether the session's key may mint the upload token the page uploads with (as the server checks). */
export function canUpload(session: Session): boolean {
  return session.key.scopes.includes('admin') || session.key.scopes.includes('upload');
}

/**
 * Uploads with Uppy's Dashboard (drag and drop of files and folders, progress, retries) over
 * tus to /v1/tus/, resumable. The page never holds the session's key: before each batch it asks
 * the console's server side for an upload token, minted with the session's key and short-lived,
 * and uploads with that (a retry of a file, with the same one).
 */
export function UploadPage({ session }: { session: Session }) {
  if (!canUpload(session)) {
    // Every upload would be refused at its token (SCOPE_DENIED): say so before files are chosen.
    return (
      <section aria-labelledby="upload-title">
        <h1 id="upload-title">Upload</h1>
        <p class="notice" role="status">
          This key ({session.key.name}, scopes {session.key.scopes.join(', ')}) cannot upload: uploading needs
          a key with the <code>upload</code> scope. Sign in with one to upload here.
        </p>
      </section>
    );
  }
  return <Uploader />;
}

function Uploader() {
  const target = useRef<HTMLDivElement>(null);
  const [done, setDone] = useState<{ ok: number; failed: number } | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    const uppy = new Uppy({ autoProceed: false });
    uppy.use(Dashboard, {
      inline: true,
      target: target.current!,
      width: '100%',
      height: 420,
      fileManagerSelectionType: 'both',
      proudlyDisplayPoweredByUppy: false,
      // True of a network cut only: nothing is kept for a reload (see storeFingerprintForResuming).
      note: 'Files and folders. An upload cut off by the network resumes; reloading the page abandons it (cancel it on the Account page to free its quota at once).',
    });
    // Each file keeps the token its upload was made with: its tus upload (which a retry resumes,
    // HEAD then PATCH) is seen by that token only, so a retry minting a fresh one would start over
    // from byte 0 and leave the first upload pending, holding its bytes against the quota.
    const tokens = new Map<string, { secret: string; until: number }>();
    uppy.on('file-removed', (file) => tokens.delete(file.id));
    uppy.use(Tus, {
      endpoint: '/v1/tus/',
      headers: (file) => ({ authorization: `Bearer ${tokens.get(file.id)?.secret ?? ''}` }),
      chunkSize: CHUNK_SIZE,
      retryDelays: [0, 1000, 3000, 5000, 10_000],
      // Nothing of the upload is kept in the browser's storage: a retry resumes from Uppy's memory.
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: true,
    });
    uppy.addPreProcessor(async (fileIDs) => {
      // A token with less than this left is replaced (its upload, if any, is then made anew).
      const needed = fileIDs.filter((id) => (tokens.get(id)?.until ?? 0) < Date.now() + TOKEN_MARGIN_MS);
      if (needed.length === 0) return;
      // A refusal here is no upload's error (Uppy emits only `error`, and shows "Upload failed"
      // with the reason behind a button): the page says it itself.
      const { secret, token } = await api.uploadToken().catch((err: unknown) => {
        const message = `No upload token to upload with: ${errorText(err)}`;
        setError(new Error(message));
        // Failed files, so that the Dashboard's Retry retries them (asking for a token again):
        // with no file in error, its retryAll() had nothing to retry and did nothing.
        for (const id of fileIDs) uppy.setFileState(id, { error: message });
        throw err;
      });
      // Its lifetime by the server's clock, counted from now by the browser's (which may be off).
      const until = Date.now() + (Date.parse(token.expires_at) - Date.parse(token.created_at));
      for (const id of needed) tokens.set(id, { secret, until });
    });
    // Back online after a cut: uploads that failed carry on from the offset the server has (tus
    // HEAD, then PATCH). Only those: one that was waiting for the network goes on by itself, and
    // a retry of nothing would end an empty run, saying "0 uploaded." mid-upload.
    uppy.on('back-online', () => {
      if (uppy.getFiles().some((file) => file.error)) void uppy.retryAll();
    });
    // The server's message and code (tus-js-client's own message is the raw request and response).
    uppy.on('upload-error', (_file, err) => setError(new Error(uploadErrorText(err))));
    uppy.on('complete', (result) => {
      if ((result.successful?.length ?? 0) + (result.failed?.length ?? 0) === 0) return;
      setDone({ ok: result.successful?.length ?? 0, failed: result.failed?.length ?? 0 });
      if ((result.failed?.length ?? 0) === 0) setError(null);
    });
    return () => uppy.destroy();
  }, []);

  return (
    <section aria-labelledby="upload-title">
      <h1 id="upload-title">Upload</h1>
      <div ref={target} class="dashboard" />
      <Notice error={error} />
      {done && (
        <p role="status" class="notice">
          {done.ok} uploaded{done.failed > 0 ? `, ${done.failed} failed` : ''}.{' '}
          <a href="#/assets">See the assets</a>
        </p>
      )}
    </section>
  );
}
