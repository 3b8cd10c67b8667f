import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyInstance } from 'fastify';
import { GatehouseError } from '../errors.js';
import { errorBody } from './nse/envelope.js';
import { API_SECURITY_HEADER_LINES } from './security-headers.js';
import { isStorwarePath, storwareErrorBody } from './storware/index.js';

/** The path of a request line ("METHOD /path?query HTTP/1.1"), as far as it was read. */
const REQUEST_PATH = /^[A-Z]+ ([^?#\s]*)/;

/**
 * Requests Node's HTTP parser refuses before Fastify sees them: not sent in time (408), headers
 * too large (431), not HTTP (400). Fastify's own answer has neither a surface's body nor the
 * security headers, and it logs the request's bytes at trace, credentials, cookies and a body's
 * password among them; here the answer is the body of the surface the request line names (the
 * NSE envelope when there is none), and only the parser's code is logged.
 */
export function answerClientError(this: FastifyInstance, error: ConnectionError, socket: Socket): void {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const failure =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new GatehouseError('REQUEST_TIMEOUT')
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? new GatehouseError('HEADERS_TOO_LARGE')
        : new GatehouseError('MALFORMED_REQUEST');
  this.log.debug(
    { parserCode: error.code, status: failure.status },
    'refused a request the HTTP parser could not read',
  );
  if (socket.writable) {
    // Node passes the bytes read so far as a Buffer (Fastify's type says otherwise).
    const raw: unknown = error.rawPacket;
    const requestLine = Buffer.isBuffer(raw) ? raw.subarray(0, 256).toString('latin1') : '';
    const storware = isStorwarePath(REQUEST_PATH.exec(requestLine)?.[1] ?? '');
    const body = JSON.stringify(storware ? storwareErrorBody(failure) : errorBody(failure));
    socket.write(
      `HTTP/1.1 ${failure.status} ${STATUS_CODES[failure.status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        API_SECURITY_HEADER_LINES +
        'Connection: close\r\n\r\n' +
        body,
    );
  }
  // As Node and Fastify do: the connection cannot be read any further.
  socket.destroy(error);
}
