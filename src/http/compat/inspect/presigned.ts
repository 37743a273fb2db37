import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import type { Core } from '../../../core/wharf.js';
import type { App } from '../../api/context.js';
import { EntityId, FileId, TAGS, uploadErrorResponses } from './schemas.js';

/** The document: "The presigned URL is valid for 15 minutes". */
const URL_VALIDITY_SECONDS = 15 * 60;

const PresignedBody = Type.Object(
  {
    // The document describes this field only in prose ("Unique identifier (ID) for the
    // entity"), and its 201 answer names the field it describes the same way `id`: clients
    // send `id`. Other spellings seen in clients are accepted too.
    id: Type.Optional(EntityId),
    entityId: Type.Optional(EntityId),
    entityID: Type.Optional(EntityId),
    entity_id: Type.Optional(EntityId),
    contentType: Type.String({
      minLength: 1,
      maxLength: 255,
      description: 'The Content-Type the PUT to the presigned URL must send.',
    }),
    hash: Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'SHA-256 of the file, base64 (hex is accepted too).',
    }),
    name: Type.String({ minLength: 1, description: 'The original file name.' }),
    size: Type.Integer({ minimum: 0, description: 'The exact size in bytes.' }),
  },
  // Fields its real clients may add are ignored rather than refused.
  { additionalProperties: true },
);

type EntityFields = { id?: string; entityId?: string; entityID?: string; entity_id?: string };

/**
 * The entity the file belongs to, if the request names one. The document does not say the
 * field is required, and a file stands on its own without it (its entity is then null).
 */
function entityIdOf(body: EntityFields): string | undefined {
  const given = [body.id, body.entityId, body.entityID, body.entity_id].filter((v) => v !== undefined);
  if (new Set(given).size > 1) {
    throw new WharfError('VALIDATION_FAILED', 'id, entityId, entityID and entity_id name different entities');
  }
  return given[0];
}

/** POST /api/inspect/v1/file/upload/presigned: a URL to PUT the bytes to, or the file already held. */
export function presignedRoute(app: App, core: Core): void {
  app.post(
    '/v1/file/upload/presigned',
    {
      schema: {
        operationId: 'inspectCreatePresignedUpload',
        summary: 'File Upload - Presigned URL',
        description:
          'A presigned URL (valid 15 minutes) to PUT the file to with the declared Content-Type (201), or, when ' +
          "the account already holds a file with this SHA-256, only that file's id (200). The URL binds the " +
          'Content-Type and size; the SHA-256 is checked when the bytes arrive and again on completion. The ' +
          'entity the file belongs to is `id` (as the document names it; `entityId`, `entityID` and ' +
          '`entity_id` are accepted too) and is optional.',
        tags: TAGS,
        body: PresignedBody,
        response: {
          200: Type.Object({ data: Type.Object({ id: FileId }) }),
          201: Type.Object({
            data: Type.Object({
              presignedURL: Type.String({
                description: 'PUT the bytes here with the declared Content-Type.',
              }),
              id: FileId,
            }),
          }),
          ...uploadErrorResponses,
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const entityId = entityIdOf(body);
      const [result] = await core.uploads.createPresigned(
        request.principal!,
        [
          {
            name: body.name,
            contentType: body.contentType,
            size: body.size,
            sha256: body.hash,
            intent: { metadata: entityId === undefined ? {} : { entityId } },
          },
        ],
        // The document's client sends Content-Type and nothing else with its PUT.
        { expiresInSeconds: URL_VALIDITY_SECONDS, contentTypeOnly: true },
      );
      if (result!.status === 'exists') {
        reply.status(200);
        return { data: { id: result!.asset.id } };
      }
      reply.status(201);
      return { data: { presignedURL: result!.request.url, id: result!.upload.id } };
    },
  );
}
