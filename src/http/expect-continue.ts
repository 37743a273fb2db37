import type { Server } from 'node:http';
import { drainsRefusedBody } from './refused-body.js';

/**
 * `Expect: 100-continue` answered when the body is first read, not on arrival. Node's default
 * sends 100 Continue before any handler runs, so a client sends its whole body even to a request
 * Wharf refuses unread (a wrong key, a file over the limit or the quota), and a large body's
 * refusal closes the connection under the client's writes: curl, which asks for every body over
 * 1 MB, then reported a broken pipe instead of the 401 or 413 about one time in ten. Now a
 * refusal is the first answer the client gets, and it never sends the body; a handler that reads
 * the body (anything that listens for its data) sends the 100 as it starts; a refusal that
 * drains the body (refused-body.ts) does not ask for it.
 */
export function continueOnRead(server: Server): void {
  server.on('checkContinue', (request, response) => {
    const onListener = (event: string | symbol) => {
      if (event !== 'data' && event !== 'readable') return;
      request.off('newListener', onListener);
      if (drainsRefusedBody(request)) return;
      if (!response.headersSent && !response.writableEnded) response.writeContinue();
    };
    request.on('newListener', onListener);
    server.emit('request', request, response);
  });
}
