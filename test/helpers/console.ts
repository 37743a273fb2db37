import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConsole } from '../../scripts/build-console.js';
import { api, type JsonResponse } from './http.js';

/**
 * The web console built from the current sources, as `npm run build` builds it, into a
 * directory of this test's own (the repository's dist/ is left alone); pass it to
 * startWharf({ consoleDir }). Removed by `remove()`.
 */
export async function buildConsoleForTest(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'wharf-console-'));
  await buildConsole({ outdir: dir });
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A signed-in console client without a browser: the cookie and CSRF token as a page holds them. */
export interface ConsoleClient {
  cookie: string;
  csrf: string;
  setCookie: string;
  /** A console API call (path under /console/api) with the cookie, and the CSRF token unless told not to. */
  call<T = any>(
    method: string,
    path: string,
    body?: unknown,
    options?: { csrf?: string | null; headers?: Record<string, string> },
  ): Promise<JsonResponse<T>>;
}

export async function signIn(
  base: string,
  key: string,
  headers: Record<string, string> = {},
): Promise<ConsoleClient> {
  const res = await api(base, undefined, 'POST', '/console/api/session', { key }, headers);
  if (res.status !== 201) throw new Error(`sign-in answered ${res.status}: ${JSON.stringify(res.body)}`);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const cookie = setCookie.split(';')[0]!;
  const csrf = res.body.csrf_token as string;
  return {
    cookie,
    csrf,
    setCookie,
    call(method, path, body, options = {}) {
      const token = options.csrf === undefined ? csrf : options.csrf;
      return api(base, undefined, method, `/console/api${path}`, body, {
        cookie,
        ...(token !== null && { 'x-csrf-token': token }),
        ...options.headers,
      });
    },
  };
}
