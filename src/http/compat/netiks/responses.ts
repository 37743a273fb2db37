import { Type } from 'typebox';
import type { Asset, Upload } from '../../../core/model.js';

/**
 * The asset as netiks cloud returns it. The document shows `location`, `location_name` and
 * `dimensions` as null and nothing more; Wharf fills them from its processing job (EXIF GPS,
 * image header) once that has run, and leaves them null until then or when unknown.
 */
export const NetiksAssetSchema = Type.Object(
  {
    id: Type.String({ description: 'The asset id (a UUID), also the id of the native API.' }),
    asset_name: Type.String(),
    storage_url: Type.String({
      description:
        'Where the bytes are stored: the same storage path as `s3_path` of the upload. To a caller that reads the asset only through its own upload of content the account already held, that upload’s own path.',
    }),
    location: Type.Union(
      [
        Type.Object({
          latitude: Type.Number(),
          longitude: Type.Number(),
          altitude: Type.Optional(Type.Number()),
        }),
        Type.Null(),
      ],
      { description: 'From EXIF GPS, once processing has run; otherwise null.' },
    ),
    location_name: Type.Union([Type.String(), Type.Null()], {
      description: 'A place name the file carries (IPTC/XMP city, region, country), once known.',
    }),
    format: Type.Union([Type.String(), Type.Null()], {
      description:
        'Sniffed from the bytes once processing has run (e.g. `jpg`); before that, the file name’s extension.',
    }),
    file_size: Type.Integer({ minimum: 0, description: 'Bytes.' }),
    dimensions: Type.Union([Type.Object({ width: Type.Integer(), height: Type.Integer() }), Type.Null()], {
      description: 'Pixel size of an image, once processing has run; otherwise null.',
    }),
    access: Type.Union([Type.Literal('private'), Type.Literal('public')]),
    created_by: Type.String({ description: 'The account that owns the asset.' }),
    last_updated_by: Type.String({ description: 'The account that owns the asset.' }),
    created_at: Type.String({ format: 'date-time' }),
    last_updated: Type.String({ format: 'date-time' }),
  },
  { description: 'A stored file, as netiks cloud describes it.' },
);

export const UploadedSchema = Type.Object({
  message: Type.String(),
  asset: NetiksAssetSchema,
});

// A format is only ever a short lower-case token; anything else in a name is not one.
const EXTENSION = /\.([a-z0-9]{1,10})$/;

/**
 * `through`: the caller's own upload when it sees the asset as that upload declared it (an
 * isolated caller whose upload was deduplicated, see viewThrough). Its `storage_url` is then
 * that upload's own storage path, never the key of the object the first uploader stored: an
 * object key names another user's upload, and is what a request aimed at that object needs.
 */
export function netiksAsset(asset: Asset, through?: Upload) {
  const { analysis } = asset;
  return {
    id: asset.id,
    asset_name: asset.name,
    storage_url: through?.storageKey ?? asset.storageKey,
    location: analysis.location ?? null,
    location_name: analysis.locationName ?? null,
    // The document returns a format in the upload response itself, before any processing
    // could have sniffed the bytes: until then the name's extension stands in.
    format: analysis.format ?? EXTENSION.exec(asset.name.toLowerCase())?.[1] ?? null,
    file_size: asset.size,
    dimensions:
      analysis.width !== undefined && analysis.height !== undefined
        ? { width: analysis.width, height: analysis.height }
        : null,
    access: asset.access,
    created_by: asset.accountId,
    last_updated_by: asset.accountId,
    created_at: new Date(asset.createdAt).toISOString(),
    last_updated: new Date(asset.updatedAt).toISOString(),
  };
}
