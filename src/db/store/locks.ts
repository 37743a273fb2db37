import type { LockStore } from '../../core/ports.js';
import type { SqlContext } from './context.js';

export function lockQueries({ db }: SqlContext): LockStore {
  return {
    async acquireLock(name: string, owner: string, until: number, now: number): Promise<boolean> {
      // One statement: a free or lapsed lease is taken, the holder's own is renewed, and two
      // nodes racing for it cannot both see themselves as the winner.
      const row = await db
        .insertInto('locks')
        .values({ name, owner, expires_at: until, release_requested: 0 })
        .onConflict((oc) =>
          oc
            .column('name')
            .doUpdateSet((eb) => ({
              owner: eb.ref('excluded.owner'),
              expires_at: eb.ref('excluded.expires_at'),
              release_requested: eb
                .case()
                .when('locks.owner', '=', owner)
                .then(eb.ref('locks.release_requested'))
                .else(0)
                .end(),
            }))
            .where((eb) => eb.or([eb('locks.owner', '=', owner), eb('locks.expires_at', '<', now)])),
        )
        .returning('owner')
        .executeTakeFirst();
      return row?.owner === owner;
    },

    async releaseLock(name: string, owner: string): Promise<void> {
      await db.deleteFrom('locks').where('name', '=', name).where('owner', '=', owner).execute();
    },

    async requestLockRelease(name: string, now: number): Promise<boolean> {
      const result = await db
        .updateTable('locks')
        .set({ release_requested: 1 })
        .where('name', '=', name)
        .where('expires_at', '>=', now)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    async lockReleaseRequested(name: string, owner: string): Promise<boolean> {
      const row = await db
        .selectFrom('locks')
        .select('release_requested')
        .where('name', '=', name)
        .where('owner', '=', owner)
        .executeTakeFirst();
      return Number(row?.release_requested ?? 0) === 1;
    },
  };
}
