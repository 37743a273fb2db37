import type { Readable } from 'node:stream';
import type { AssetService } from './assets.js';
import { checkNamespace, requireScope, viewThrough } from './authorization.js';
import { isWharfError, WharfError } from './errors.js';
import type { Access, Asset, FileVersion, Principal, Upload } from './model.js';
import { validateFileName } from './names.js';
import type { Store } from './ports.js';
import type { DirectUpload, UploadOutcome } from './upload-types.js';
import type { UploadService } from './uploads.js';

const NAMESPACE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function validateNamespace(namespace: string): string {
  if (!NAMESPACE.test(namespace) || namespace.includes('..')) {
    throw new WharfError(
      'INVALID_NAME',
      'A namespace is 1 to 64 letters, digits, _, - or ., starting with a letter or digit.',
    );
  }
  return namespace;
}

export interface NamedFileUpload {
  namespace: string;
  name: string;
  body: Readable;
  contentType?: string | undefined;
  declaredSize?: number | undefined;
  access?: Access | undefined;
  /** Digests the client declared (hex or base64); a mismatch stores nothing, as for DirectUpload. */
  expected?: DirectUpload['expected'];
  trailing?: DirectUpload['trailing'];
  /** See DirectUpload.beforeCommit: a form's later parts can only be checked after the file. */
  beforeCommit?: (() => Promise<void>) | undefined;
  /** See DirectUpload.explain. */
  explain?: ((err: unknown) => unknown) | undefined;
}

export interface ResolvedVersion {
  version: FileVersion;
  asset: Asset;
  /** The caller's own upload of the asset's content when it sees the asset through it. */
  through?: Upload | undefined;
}

/** The largest version number a file can have (versions are stored as 32-bit integers). */
export const MAX_FILE_VERSION = 2 ** 31 - 1;

/** How often a read of a name's latest version follows that version's deletion (FileService.get). */
const LATEST_READS = 5;

/**
 * Named files in namespaces, with versions: each upload of a name is its next version,
 * numbered in the same transaction that records the asset. Versions point at assets, so
 * identical content is stored once however many versions carry it.
 */
export class FileService {
  constructor(
    private readonly store: Store,
    private readonly uploads: UploadService,
    private readonly assets: AssetService,
  ) {}

  async put(principal: Principal, input: NamedFileUpload): Promise<UploadOutcome & { version: FileVersion }> {
    let namespace: string;
    let name: string;
    try {
      requireScope(principal, 'upload');
      namespace = validateNamespace(input.namespace);
      name = validateFileName(input.name);
      checkNamespace(principal, namespace);
    } catch (err) {
      input.body.resume();
      throw err;
    }
    const outcome = await this.uploads.uploadDirect(principal, {
      name,
      contentType: input.contentType,
      body: input.body,
      declaredSize: input.declaredSize,
      ...(input.expected && { expected: input.expected }),
      ...(input.beforeCommit && { beforeCommit: input.beforeCommit }),
      ...(input.trailing && { trailing: input.trailing }),
      ...(input.explain && { explain: input.explain }),
      intent: { file: { namespace, name }, access: input.access },
    });
    if (!outcome.version) throw new WharfError('INTERNAL', 'The upload recorded no version.');
    return { ...outcome, version: outcome.version };
  }

  /** The latest version, or the given one; older versions stay readable. */
  async get(
    principal: Principal,
    namespace: string,
    name: string,
    version?: number,
  ): Promise<ResolvedVersion> {
    // No file has that many versions; the stores keep version numbers as 32-bit integers,
    // and PostgreSQL refuses a larger one (or Infinity, from ?version=1e309) as a query error.
    if (version !== undefined && !(Number.isInteger(version) && version <= MAX_FILE_VERSION)) {
      throw new WharfError('NOT_FOUND', 'No such file or version.');
    }
    const readable = this.readable(principal, namespace, name).namespace;
    const fileName = validateFileName(name);
    // The version row and its asset are two reads: deleting the latest version's asset in
    // between (which removes that version) leaves a row whose asset is gone. The name is then
    // served at the latest version left, as once the delete is over, so the latest is read
    // again; an asked-for version that went is missing. Bounded: each retry follows a delete.
    for (let attempt = 1; ; attempt++) {
      const found = await this.store.getFileVersion(principal.accountId, readable, fileName, version);
      if (!found) throw new WharfError('NOT_FOUND', 'No such file or version.');
      try {
        return { version: found, ...(await this.assetOf(principal, found)) };
      } catch (err) {
        if (version !== undefined || attempt === LATEST_READS || !isWharfError(err, 'NOT_FOUND')) throw err;
        // Missing to this caller but not deleted (an asset it may not see): that is the answer.
        if (await this.store.getFileVersion(principal.accountId, readable, fileName, found.version))
          throw err;
      }
    }
  }

  /**
   * A version's asset as the caller sees it at GET /v1/assets/{id} (AssetService.get): the
   * record is its first uploader's, so a confined caller sees it as its namespace's (or its
   * own) upload declared it, never another uploader's name, subject or metadata. An asset the
   * caller may not see (a name-prefix key's, first uploaded under a name outside its prefix)
   * makes the version missing to it, as the asset and its bytes are.
   */
  private async assetOf(
    principal: Principal,
    version: FileVersion,
  ): Promise<{ asset: Asset; through?: Upload | undefined }> {
    try {
      const { asset, through } = await this.assets.view(principal, version.assetId);
      return through ? { asset: viewThrough(asset, through), through } : { asset };
    } catch (err) {
      if (isWharfError(err, 'NOT_FOUND')) {
        throw new WharfError('NOT_FOUND', 'No such file or version.');
      }
      throw err;
    }
  }

  async versions(principal: Principal, namespace: string, name: string): Promise<FileVersion[]> {
    const all = await this.store.listFileVersions(
      principal.accountId,
      this.readable(principal, namespace, name).namespace,
      validateFileName(name),
    );
    if (all.length === 0) throw new WharfError('NOT_FOUND', 'No such file.');
    return all;
  }

  /** Reading named files needs `read`; outside the caller's confinement they are missing. */
  private readable(principal: Principal, namespace: string, name: string): { namespace: string } {
    requireScope(principal, 'read');
    const valid = validateNamespace(namespace);
    const outside =
      (principal.namespace !== null && valid !== principal.namespace) ||
      (principal.namePrefix !== null && !name.normalize('NFC').startsWith(principal.namePrefix));
    if (outside) throw new WharfError('NOT_FOUND', 'No such file or version.');
    return { namespace: valid };
  }
}
