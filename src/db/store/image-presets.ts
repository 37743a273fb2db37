import type { Selectable } from 'kysely';
import type { ImagePreset } from '../../core/model.js';
import type { PresetStore } from '../../core/ports.js';
import type { ImagePresetsTable } from '../schema.js';
import type { SqlContext } from './context.js';

function toPreset(row: Selectable<ImagePresetsTable>): ImagePreset {
  return {
    accountId: row.account_id,
    name: row.name,
    params: JSON.parse(row.params) as ImagePreset['params'],
    eager: Number(row.eager) === 1,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

export function presetQueries({ db }: SqlContext): PresetStore {
  const queries: PresetStore = {
    async getPreset(accountId: string, name: string): Promise<ImagePreset | undefined> {
      const row = await db
        .selectFrom('image_presets')
        .selectAll()
        .where('account_id', '=', accountId)
        .where('name', '=', name)
        .executeTakeFirst();
      return row && toPreset(row);
    },

    async listPresets(accountId: string): Promise<ImagePreset[]> {
      const rows = await db
        .selectFrom('image_presets')
        .selectAll()
        .where('account_id', '=', accountId)
        .orderBy('name')
        .execute();
      return rows.map(toPreset);
    },

    async putPreset(preset: ImagePreset): Promise<ImagePreset> {
      await db
        .insertInto('image_presets')
        .values({
          account_id: preset.accountId,
          name: preset.name,
          params: JSON.stringify(preset.params),
          eager: preset.eager ? 1 : 0,
          created_at: preset.createdAt,
          updated_at: preset.updatedAt,
        })
        .onConflict((oc) =>
          oc.columns(['account_id', 'name']).doUpdateSet((eb) => ({
            params: eb.ref('excluded.params'),
            eager: eb.ref('excluded.eager'),
            updated_at: eb.ref('excluded.updated_at'),
          })),
        )
        .execute();
      return (await queries.getPreset(preset.accountId, preset.name))!;
    },

    async deletePreset(accountId: string, name: string): Promise<boolean> {
      const result = await db
        .deleteFrom('image_presets')
        .where('account_id', '=', accountId)
        .where('name', '=', name)
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
  return queries;
}
