import { WharfError } from './errors.js';
import { type BodyFactory, idempotent, type Transport } from './http.js';

const TUS = { 'tus-resumable': '1.0.0' };

/** Where a tus upload stands (HEAD). */
export interface TusState {
  offset: number;
  length: number | undefined;
  /** Set once the upload is finished: the asset its bytes became. */
  assetId: string | undefined;
  /** Finished: whether the account already held its content (`Wharf-Upload-Result: exists`). */
  exists: boolean;
}

export interface TusAppended {
  offset: number;
  /** Set by the request that delivered the last byte. */
  assetId: string | undefined;
  /** Set with assetId: whether the account already held the content. */
  exists: boolean;
}

/**
 * tus 1.0 (`/v1/tus/`), the protocol steps. The upload helper (upload.ts, strategy `tus`)
 * drives them: create once, keep the URL, then HEAD and PATCH from the offset after any cut.
 */
export class TusClient {
  constructor(private readonly http: Transport) {}

  /**
   * Creates an upload; returns its URL (keep it to resume). `sha256` (hex) is verified at the end.
   * Its retries carry one Idempotency-Key: one whose first answer was lost gets the upload the
   * first made, not a second (which an upload token for one file would refuse).
   */
  async create(options: {
    name: string;
    size: number;
    contentType?: string | undefined;
    sha256?: string | undefined;
    signal?: AbortSignal | undefined;
  }): Promise<string> {
    const metadata = [
      `filename ${base64(options.name)}`,
      ...(options.contentType ? [`filetype ${base64(options.contentType)}`] : []),
      ...(options.sha256 ? [`sha256 ${base64(options.sha256)}`] : []),
    ].join(',');
    const response = await this.http.request('POST', '/v1/tus/', {
      headers: {
        ...TUS,
        'upload-length': String(options.size),
        'upload-metadata': metadata,
        ...idempotent(),
      },
      signal: options.signal,
    });
    await response.body?.cancel();
    const location = response.headers.get('location');
    if (!location)
      throw new WharfError('UNEXPECTED_RESPONSE', 'The tus creation answered without a Location.');
    return new URL(location, this.http.baseUrl).toString();
  }

  /** How many bytes arrived: where to resume. */
  async state(url: string, signal?: AbortSignal): Promise<TusState> {
    const response = await this.http.request('HEAD', url, { headers: TUS, auth: true, signal });
    const length = response.headers.get('upload-length');
    return {
      offset: Number(response.headers.get('upload-offset') ?? 0),
      length: length === null ? undefined : Number(length),
      assetId: response.headers.get('wharf-asset-id') || undefined,
      exists: response.headers.get('wharf-upload-result') === 'exists',
    };
  }

  /**
   * Appends `size` bytes at `offset`. Only a busy refusal (503 with Retry-After: refused before
   * a byte was read) is waited out and sent again here, `onRetry` called first; after a cut, the
   * bytes that arrived are kept, so the caller asks state() and continues from there.
   */
  async append(
    url: string,
    offset: number,
    body: BodyFactory,
    size: number,
    signal?: AbortSignal,
    onRetry?: () => void,
  ): Promise<TusAppended> {
    const response = await this.http.request('PATCH', url, {
      headers: {
        ...TUS,
        'upload-offset': String(offset),
        'content-type': 'application/offset+octet-stream',
        'content-length': String(size),
      },
      body,
      auth: true,
      retry: 'busy',
      ...(onRetry && { onRetry }),
      signal,
    });
    await response.body?.cancel();
    return {
      offset: Number(response.headers.get('upload-offset') ?? offset + size),
      assetId: response.headers.get('wharf-asset-id') || undefined,
      exists: response.headers.get('wharf-upload-result') === 'exists',
    };
  }

  /** Terminates an unfinished upload and frees its bytes. */
  async terminate(url: string, signal?: AbortSignal): Promise<void> {
    const response = await this.http.request('DELETE', url, { headers: TUS, auth: true, signal });
    await response.body?.cancel();
  }
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
