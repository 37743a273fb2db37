import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { ConfigError, knownVariables, loadConfig, readConfig } from '../../src/config.js';
import { parseDatabaseUrl } from '../../src/db/url.js';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('the configuration was accepted');
}

describe('configuration', () => {
  test('every problem is reported at once, one per variable, each naming it', () => {
    assert.deepEqual(
      problems({
        WHARF_PORT: 'eighty',
        WHARF_PUBLIC_URL: 'ftp://files.example.com',
        WHARF_API_KEY: 'short',
        WHARF_UPLOAD_EXPIRES: '0',
        WHARF_LOG_LEVEL: 'verbose',
        WHARF_SHUTDOWN_TIMEOUT: '1h',
        WHARF_STORAGE: 'gcs',
      }),
      [
        'WHARF_PORT must be a whole number, got "eighty"',
        'WHARF_PUBLIC_URL must be an http(s) URL, got "ftp://files.example.com"',
        'WHARF_API_KEY must be at least 16 characters.',
        'WHARF_UPLOAD_EXPIRES must be between 1 and 604800, got 0',
        'WHARF_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
        'WHARF_SHUTDOWN_TIMEOUT must be a whole number, got "1h"',
        'WHARF_STORAGE must be local or s3, got "gcs"',
      ],
    );
  });

  test('an empty environment is valid; empty values mean "unset"', () => {
    const defaults = loadConfig({});
    assert.equal(defaults.port, 8080);
    assert.equal(defaults.logLevel, 'info');
    assert.equal(defaults.shutdownTimeoutSeconds, 30);
    assert.match(defaults.databaseUrl, /^sqlite:\/\/\/.*\/data\/wharf\.db$/);
    assert.deepEqual(loadConfig({ WHARF_PORT: '', WHARF_DATABASE_URL: '', WHARF_HOST: '' }), defaults);
    assert.equal(loadConfig({ WHARF_SHUTDOWN_TIMEOUT: '0' }).shutdownTimeoutSeconds, 0);
  });

  test('WHARF_SHUTDOWN_DELAY: no wait unless told, at most 10 minutes', () => {
    assert.equal(loadConfig({}).shutdownDelaySeconds, 0);
    assert.equal(loadConfig({ WHARF_SHUTDOWN_DELAY: '15' }).shutdownDelaySeconds, 15);
    assert.deepEqual(problems({ WHARF_SHUTDOWN_DELAY: '601' }), [
      'WHARF_SHUTDOWN_DELAY must be between 0 and 600, got 601',
    ]);
  });

  test('WHARF_MAX_FILE_SIZE is at least one byte: 0 is not "off" there but a server that takes only empty files', () => {
    assert.equal(loadConfig({ WHARF_MAX_FILE_SIZE: '1' }).maxFileSize, 1);
    assert.deepEqual(problems({ WHARF_MAX_FILE_SIZE: '0' }), [
      `WHARF_MAX_FILE_SIZE must be between 1 and ${Number.MAX_SAFE_INTEGER}, got 0`,
    ]);
  });

  test('WHARF_WEBHOOK_CONCURRENCY: attempts one endpoint may have in flight, 2 unless told, 1 to 64', () => {
    assert.equal(loadConfig({}).webhooks.concurrency, 2);
    assert.equal(loadConfig({ WHARF_WEBHOOK_CONCURRENCY: '1' }).webhooks.concurrency, 1);
    assert.equal(loadConfig({ WHARF_WEBHOOK_CONCURRENCY: '64' }).webhooks.concurrency, 64);
    assert.deepEqual(problems({ WHARF_WEBHOOK_CONCURRENCY: '0' }), [
      'WHARF_WEBHOOK_CONCURRENCY must be between 1 and 64, got 0',
    ]);
    assert.deepEqual(problems({ WHARF_WEBHOOK_CONCURRENCY: 'many' }), [
      'WHARF_WEBHOOK_CONCURRENCY must be a whole number, got "many"',
    ]);
  });

  test('a password is never shown in a problem', () => {
    const shown = problems({
      WHARF_DATABASE_URL: 'postgress://wharf:hunter2@db.internal:5432/wharf',
      WHARF_PUBLIC_URL: 'ftp://user:hunter2@files.example.com',
      WHARF_STORAGE: 's3',
      WHARF_S3_ENDPOINT: 'minio://key:hunter2@minio:9000',
      WHARF_S3_BUCKET: 'b',
      WHARF_S3_ACCESS_KEY_ID: 'k',
      WHARF_S3_SECRET_ACCESS_KEY: 'hunter2',
    }).join('\n');
    assert.equal(shown.split('\n').length, 3, shown);
    assert.doesNotMatch(shown, /hunter2/);
    assert.match(shown, /"ftp:\/\/\*\*\*@files\.example\.com"/);
    // A user name holding @ or :, as URL parsers read it: the password is still hidden.
    for (const url of ['ftp://user@corp:hunter2@host', 'ftp://user:p@hunter2@host']) {
      assert.doesNotMatch(problems({ WHARF_PUBLIC_URL: url }).join('\n'), /hunter2/, url);
    }
  });

  test('WHARF_PORT 0 needs WHARF_PUBLIC_URL: the port is chosen at listen, after URLs are signed with it', () => {
    assert.deepEqual(problems({ WHARF_PORT: '0' }), [
      'WHARF_PORT 0 (any free port) needs WHARF_PUBLIC_URL: the URLs Wharf hands out name the port.',
    ]);
    assert.equal(loadConfig({ WHARF_PORT: '0', WHARF_PUBLIC_URL: 'https://files.example.com' }).port, 0);
  });

  test('WHARF_PUBLIC_URL is used as a URL parser reads it: scheme and host lower-case, no surrounding spaces or trailing slash', () => {
    // An upper-case scheme once kept the console's cookie from being Secure, and a leading space
    // went into every content_url.
    assert.equal(
      loadConfig({ WHARF_PUBLIC_URL: ' HTTPS://Files.Example.com/ ' }).publicUrl,
      'https://files.example.com',
    );
    assert.equal(
      loadConfig({ WHARF_PUBLIC_URL: 'https://files.example.com//' }).publicUrl,
      'https://files.example.com',
    );
  });

  test('WHARF_PUBLIC_URL with a path, query or fragment is refused: Wharf is served at the root of its origin', () => {
    // Paths appended after a query or fragment were no paths ("https://x.com/base?q=1/v1/assets/…"),
    // and under a path prefix no route matched and presigned uploads were refused.
    for (const url of [
      'https://files.example.com/wharf',
      'https://files.example.com/base?q=1',
      'https://files.example.com?q=1',
      'https://files.example.com#frag',
      'https://files.example.com/?',
      'https://files.example.com/#',
    ]) {
      const shown = problems({ WHARF_PUBLIC_URL: url });
      assert.equal(shown.length, 1, url);
      assert.match(
        shown[0]!,
        /^WHARF_PUBLIC_URL must be scheme:\/\/host\[:port\] only, with no path, query or fragment: Wharf is served at the root of its origin, got "https:\/\/files\.example\.com/,
        url,
      );
    }
    assert.equal(
      loadConfig({ WHARF_PUBLIC_URL: 'https://files.example.com:8443/' }).publicUrl,
      'https://files.example.com:8443',
    );
    // A WHARF_HOST that would put a path into the URL made from it is WHARF_HOST's problem.
    assert.deepEqual(problems({ WHARF_HOST: 'files/x' }), [
      'WHARF_HOST must be a host name or an IP address, got "files/x"',
    ]);
  });

  test('WHARF_SECRET shorter than 32 characters is refused, and never shown', () => {
    // Every signing key derives from it: a short one is guessed offline from any signed URL.
    assert.deepEqual(problems({ WHARF_SECRET: 'a' }), ['WHARF_SECRET must be at least 32 characters.']);
    assert.deepEqual(problems({ WHARF_SECRET: 'x'.repeat(31) }), [
      'WHARF_SECRET must be at least 32 characters.',
    ]);
    assert.equal(loadConfig({ WHARF_SECRET: 'x'.repeat(32) }).secret, 'x'.repeat(32));
    // The previous one only opens what it sealed: a short one is what a rotation moves away from.
    assert.equal(
      loadConfig({ WHARF_SECRET: 'y'.repeat(44), WHARF_SECRET_PREVIOUS: 'short' }).previousSecret,
      'short',
    );
  });

  test('WHARF_CORS_ORIGINS is taken as browsers send an Origin; an entry none could match is refused', () => {
    assert.deepEqual(
      loadConfig({
        WHARF_CORS_ORIGINS:
          'https://App.Example.com/, http://localhost:5173 ,https://b.example.com:443,*,null',
      }).corsOrigins,
      ['https://app.example.com', 'http://localhost:5173', 'https://b.example.com', '*', 'null'],
    );
    assert.deepEqual(
      problems({
        WHARF_CORS_ORIGINS:
          'https://app.example.com/console,app.example.org,ftp://files.example.com,https://c.example.com?x=1',
      }),
      [
        'WHARF_CORS_ORIGINS entry "https://app.example.com/console" is not an origin: browsers send scheme://host[:port] only (e.g. "https://app.example.com"), so it could never match',
        'WHARF_CORS_ORIGINS entry "app.example.org" is not an origin: browsers send scheme://host[:port] only (e.g. "https://app.example.com"), so it could never match',
        'WHARF_CORS_ORIGINS entry "ftp://files.example.com" is not an origin: browsers send scheme://host[:port] only (e.g. "https://app.example.com"), so it could never match',
        'WHARF_CORS_ORIGINS entry "https://c.example.com?x=1" is not an origin: browsers send scheme://host[:port] only (e.g. "https://c.example.com"), so it could never match',
      ],
    );
  });

  test('WHARF_TRUST_PROXY: none unless told; addresses, CIDR ranges and proxy-addr’s names, each one Fastify takes', () => {
    assert.deepEqual(loadConfig({}).trustProxy, []);
    const listed = loadConfig({
      WHARF_TRUST_PROXY: '127.0.0.1, ::1,10.0.0.0/8,fd00::/8 ,loopback,uniquelocal,linklocal',
    }).trustProxy;
    assert.deepEqual(listed, [
      '127.0.0.1',
      '::1',
      '10.0.0.0/8',
      'fd00::/8',
      'loopback',
      'uniquelocal',
      'linklocal',
    ]);
    // What is accepted here is what Fastify (proxy-addr) compiles: no start that fails later.
    for (const entry of listed) assert.doesNotThrow(() => Fastify({ trustProxy: [entry] }), entry);
    const hint =
      "list the proxies' IP addresses or CIDR ranges (127.0.0.1, 10.0.0.0/8, ::1), or loopback, linklocal, uniquelocal, separated by commas";
    const refused = [
      'true',
      '1',
      'nginx.internal',
      '10.0.0.0/33',
      '10.0.0.0/0',
      '::1/129',
      '10.0.0.1/8/8',
      'fe80::1%eth0',
    ];
    assert.deepEqual(
      problems({ WHARF_TRUST_PROXY: refused.join(',') }),
      refused.map((entry) => `WHARF_TRUST_PROXY entry ${JSON.stringify(entry)} is not an address: ${hint}`),
    );
  });

  test('a WHARF_HOST no URL can name is reported as WHARF_HOST, not as the WHARF_PUBLIC_URL made from it', () => {
    assert.deepEqual(problems({ WHARF_HOST: '999.1.1.1' }), [
      'WHARF_HOST must be a host name or an IP address, got "999.1.1.1"',
    ]);
    assert.deepEqual(problems({ WHARF_HOST: 'bad host' }), [
      'WHARF_HOST must be a host name or an IP address, got "bad host"',
    ]);
    // With a public URL of its own, the host is only where to listen (checked when listening).
    assert.equal(
      loadConfig({ WHARF_HOST: '999.1.1.1', WHARF_PUBLIC_URL: 'https://files.example.com' }).host,
      '999.1.1.1',
    );
    // An IPv6 address is bracketed in the URL made from it.
    assert.equal(loadConfig({ WHARF_HOST: '::1' }).publicUrl, 'http://[::1]:8080');
  });

  test('WHARF_PUBLIC_URL with a user or password is refused: every URL handed out starts with it', () => {
    const shown = problems({ WHARF_PUBLIC_URL: 'http://admin:hunter2@127.0.0.1:8080' });
    assert.equal(shown.length, 1, shown.join('\n'));
    assert.match(shown[0]!, /WHARF_PUBLIC_URL must not hold a user or password/);
    assert.doesNotMatch(shown[0]!, /hunter2/);
  });
});

describe('WHARF_DATABASE_URL', () => {
  test('PostgreSQL, SQLite URLs and plain paths are taken', () => {
    assert.deepEqual(parseDatabaseUrl('postgres://u:p@db:5432/wharf'), {
      dialect: 'postgres',
      url: 'postgres://u:p@db:5432/wharf',
    });
    assert.equal((parseDatabaseUrl('postgresql://db/wharf') as { dialect: string }).dialect, 'postgres');
    assert.equal((parseDatabaseUrl('POSTGRES://db/wharf') as { dialect: string }).dialect, 'postgres');
    assert.deepEqual(parseDatabaseUrl('sqlite:///srv/wharf/wharf.db'), {
      dialect: 'sqlite',
      path: '/srv/wharf/wharf.db',
    });
    assert.deepEqual(parseDatabaseUrl('sqlite:data/wharf.db'), { dialect: 'sqlite', path: 'data/wharf.db' });
    assert.deepEqual(parseDatabaseUrl('/srv/wharf.db'), { dialect: 'sqlite', path: '/srv/wharf.db' });
    assert.deepEqual(parseDatabaseUrl('./data/wharf.db'), { dialect: 'sqlite', path: './data/wharf.db' });
    assert.deepEqual(parseDatabaseUrl(':memory:'), { dialect: 'sqlite', path: ':memory:' });
  });

  test('any other scheme is refused, with a hint for a near miss, and the URL is never quoted', () => {
    const [typo] = problems({ WHARF_DATABASE_URL: 'postgress://wharf:secret@db.internal/wharf' });
    assert.equal(
      typo,
      'WHARF_DATABASE_URL has the unknown scheme "postgress:" (did you mean "postgres:"?); ' +
        'use postgres://…, postgresql://…, sqlite:<path> or a plain file path',
    );
    for (const url of ['mysql://root:secret@db/wharf', 'file:///srv/wharf.db', 'http://db/wharf']) {
      const [problem] = problems({ WHARF_DATABASE_URL: url });
      assert.match(problem!, /^WHARF_DATABASE_URL has the unknown scheme "[a-z]+:"/);
      assert.doesNotMatch(problem!, /secret|db\/wharf|srv/);
    }
    const [broken] = problems({ WHARF_DATABASE_URL: 'postgres://wharf:se cr#et@db:port/wharf' });
    assert.match(broken!, /^WHARF_DATABASE_URL is not a valid PostgreSQL URL/);
    assert.doesNotMatch(broken!, /se cr/);
    assert.match(problems({ WHARF_DATABASE_URL: 'sqlite://' })[0]!, /names no SQLite file/);
  });
});

describe('unknown variables', () => {
  test('each WHARF_* that Wharf does not read is a warning, with the nearest known name for a typo', () => {
    const { warnings } = readConfig({
      WHARF_PROT: '9000',
      WHARF_S3_BUKET: 'assets',
      WHARF_DATABSE_URL: 'postgres://db/wharf',
      WHARF_TOTALLY_NEW: '1',
      WHARFISH: 'not ours',
      PATH: '/usr/bin',
    });
    assert.deepEqual(warnings, [
      'WHARF_DATABSE_URL is not a Wharf setting and is ignored (did you mean WHARF_DATABASE_URL?).',
      'WHARF_PROT is not a Wharf setting and is ignored (did you mean WHARF_PORT?).',
      'WHARF_S3_BUKET is not a Wharf setting and is ignored (did you mean WHARF_S3_BUCKET?).',
      'WHARF_TOTALLY_NEW is not a Wharf setting and is ignored.',
    ]);
  });

  test('a start that fails still names the unknown variables: a typo is often the cause', () => {
    assert.throws(
      () =>
        readConfig({
          WHARF_STORAGE: 's3',
          WHARF_S3_BUKET: 'assets',
          WHARF_S3_ACCESS_KEY_ID: 'a',
          WHARF_S3_SECRET_ACCESS_KEY: 'b',
        }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, ['WHARF_S3_BUCKET must be set when WHARF_STORAGE=s3.']);
        assert.deepEqual(err.warnings, [
          'WHARF_S3_BUKET is not a Wharf setting and is ignored (did you mean WHARF_S3_BUCKET?).',
        ]);
        return true;
      },
    );
  });

  test('the upload CLI’s variables are no warning: one shell may set them and start the server', () => {
    const { warnings } = readConfig({
      WHARF_URL: 'https://files.example.com',
      WHARF_KEY: 'wharf_x',
      WHARF_TOKEN: 'wharf_ut_x',
      WHARF_CONFIG: '/etc/wharf.json',
    });
    assert.deepEqual(warnings, []);
  });

  test('S3 settings without WHARF_STORAGE=s3 are a warning (the bytes would stay on local disk)', () => {
    const { config, warnings } = readConfig({ WHARF_S3_BUCKET: 'assets', WHARF_S3_REGION: 'eu-west-1' });
    assert.deepEqual(config.storage, { kind: 'local' });
    assert.deepEqual(warnings, [
      'WHARF_S3_BUCKET is set but WHARF_STORAGE is not s3, so it is ignored (bytes stay in WHARF_DATA_DIR).',
      'WHARF_S3_REGION is set but WHARF_STORAGE is not s3, so it is ignored (bytes stay in WHARF_DATA_DIR).',
    ]);
  });

  test('WHARF_METRICS_HOST without WHARF_METRICS_PORT is a warning; with it, checked as WHARF_HOST is', () => {
    const { config, warnings } = readConfig({ WHARF_METRICS_HOST: '0.0.0.0' });
    assert.equal(config.metrics.port, undefined);
    assert.deepEqual(warnings, [
      'WHARF_METRICS_HOST is set but WHARF_METRICS_PORT is not, so it is ignored (no separate metrics listener is opened).',
    ]);
    const used = readConfig({ WHARF_METRICS_HOST: '::', WHARF_METRICS_PORT: '9464' });
    assert.deepEqual(used.warnings, []);
    assert.equal(used.config.metrics.host, '::');
    for (const host of ['999.1.1.1', 'bad host', 'files/x']) {
      assert.deepEqual(problems({ WHARF_METRICS_HOST: host, WHARF_METRICS_PORT: '9464' }), [
        `WHARF_METRICS_HOST must be a host name or an IP address, got ${JSON.stringify(host)}`,
      ]);
    }
  });

  test('WHARF_S3_ENDPOINT is scheme://host[:port]: a path would start the server on "NoSuchBucket"', () => {
    const s3 = {
      WHARF_STORAGE: 's3',
      WHARF_S3_BUCKET: 'assets',
      WHARF_S3_ACCESS_KEY_ID: 'k',
      WHARF_S3_SECRET_ACCESS_KEY: 's',
    };
    for (const endpoint of [
      'http://minio:9000/somepath',
      'https://s3.example.com/assets/',
      'http://minio:9000/?x=1',
    ]) {
      assert.deepEqual(problems({ ...s3, WHARF_S3_ENDPOINT: endpoint }), [
        `WHARF_S3_ENDPOINT must be scheme://host[:port] only, with no path, query or fragment (the bucket is WHARF_S3_BUCKET), got ${JSON.stringify(endpoint)}`,
      ]);
    }
    // A password in it is not shown.
    assert.doesNotMatch(
      problems({ ...s3, WHARF_S3_ENDPOINT: 'http://key:hunter2@minio:9000/x' }).join('\n'),
      /hunter2/,
    );
    for (const endpoint of ['http://minio:9000', 'https://s3.example.com/']) {
      const { storage } = loadConfig({ ...s3, WHARF_S3_ENDPOINT: endpoint });
      assert.equal(storage.kind === 's3' && storage.endpoint, endpoint);
    }
  });

  test('the known variables are the ones the code reads: every WHARF_* named in src/config.ts', () => {
    const source = readFileSync(new URL('../../src/config.ts', import.meta.url), 'utf8');
    const named = new Set([...source.matchAll(/\b(WHARF_[A-Z0-9_]*[A-Z0-9])\b/g)].map((m) => m[1]!));
    // Names that only appear in messages (WHARF_S3_*, written as a family) are not variables.
    named.delete('WHARF_S3');
    assert.deepEqual(knownVariables(), [...named].sort());
    assert.ok(knownVariables().includes('WHARF_SHUTDOWN_TIMEOUT'));
  });
});
