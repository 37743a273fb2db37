import { Type } from 'typebox';
import { requireKey, requireScope } from '../../core/authorization.js';
import type { Account } from '../../core/model.js';
import { named } from '../openapi/components.js';
import type { ApiContext, App } from './context.js';
import { errorResponses } from './schemas.js';

const SettingsSchema = named(
  'AccountSettings',
  Type.Object(
    {
      strip_gps: Type.Boolean({
        description:
          'New images are stored without their location (EXIF GPS, XMP and IPTC place names): see docs/images.md.',
      }),
    },
    { description: 'Settings of the caller’s account.' },
  ),
);

const SettingsChanges = named(
  'AccountSettingsChanges',
  Type.Partial(SettingsSchema, {
    additionalProperties: false,
    description: 'The settings to change; those left out stay as they are.',
  }),
);

function settingsJson(account: Account) {
  return { strip_gps: account.stripGps };
}

/** The caller's account settings; an admin key changes them. */
export async function accountSettingsRoutes(app: App, { core }: ApiContext): Promise<void> {
  app.get(
    '/v1/account/settings',
    {
      schema: {
        operationId: 'getAccountSettings',
        summary: 'The account’s settings',
        tags: ['account'],
        response: { 200: SettingsSchema, ...errorResponses },
      },
    },
    async (request) => {
      // The account's settings are the keys' business; a token only uploads and reads its own.
      requireKey(request.principal!);
      return settingsJson(await core.keys.getAccount(request.principal!.accountId));
    },
  );

  app.patch(
    '/v1/account/settings',
    {
      schema: {
        operationId: 'updateAccountSettings',
        summary: 'Change the account’s settings (admin)',
        tags: ['account'],
        body: SettingsChanges,
        response: { 200: SettingsSchema, ...errorResponses },
      },
    },
    async (request) => {
      const principal = request.principal!;
      requireScope(principal, 'admin');
      const { strip_gps } = request.body;
      return settingsJson(
        await core.keys.updateAccount(
          principal.accountId,
          strip_gps === undefined ? {} : { stripGps: strip_gps },
        ),
      );
    },
  );
}
