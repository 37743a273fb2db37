import { editDistance } from '../core/edit-distance.js';

/** Where WHARF_DATABASE_URL points: a PostgreSQL server, or a SQLite file. */
export type DatabaseTarget = { dialect: 'postgres'; url: string } | { dialect: 'sqlite'; path: string };

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const KNOWN_SCHEMES = ['postgres:', 'postgresql:', 'sqlite:'];

/**
 * `postgres://…` / `postgresql://…`; SQLite as `sqlite:///abs/path.db`, `sqlite:relative.db` or a
 * plain path (`:memory:` included). Anything else with a scheme is refused, not taken for a file
 * name: `postgress://user:secret@db/wharf` would otherwise become a SQLite file in a folder named
 * after the URL, password and all. A problem never quotes the URL, which may hold a password.
 */
export function parseDatabaseUrl(url: string): DatabaseTarget | { problem: string } {
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') {
    try {
      new URL(url);
    } catch {
      return {
        problem:
          'is not a valid PostgreSQL URL (postgres://user:password@host:5432/database; ' +
          'characters such as @ : / # in the user or password must be percent-encoded)',
      };
    }
    return { dialect: 'postgres', url };
  }
  if (scheme === 'sqlite') {
    const path = url.replace(/^sqlite:(\/\/)?/i, '');
    if (path === '')
      return { problem: 'names no SQLite file (sqlite:///absolute/path.db or sqlite:relative.db)' };
    return { dialect: 'sqlite', path };
  }
  if (scheme !== undefined) {
    const near = KNOWN_SCHEMES.find((known) => editDistance(`${scheme}:`, known) <= 2);
    return {
      problem:
        `has the unknown scheme "${scheme}:"${near ? ` (did you mean "${near}"?)` : ''}; ` +
        'use postgres://…, postgresql://…, sqlite:<path> or a plain file path',
    };
  }
  return { dialect: 'sqlite', path: url };
}
