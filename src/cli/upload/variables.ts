/**
 * The environment the client commands read (upload, sync, ls, get, rm, login): a shell that sets them
 * may also start the server, which must not call them unknown settings (typos of its own).
 */
export const CLIENT_VARIABLES: readonly string[] = ['WHARF_URL', 'WHARF_KEY', 'WHARF_TOKEN', 'WHARF_CONFIG'];
