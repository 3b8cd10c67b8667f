import type { FastifyInstance } from 'fastify';

/**
 * Headers every answer carries. API answers hold tokens and personal data: never cached, never
 * framed, never sniffed. /docs needs its own scripts, so the strict CSP stays off it.
 */
export function addSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply, payload) => {
    reply.header('X-Content-Type-Options', 'nosniff');
    reply.header('X-Frame-Options', 'DENY');
    reply.header('Referrer-Policy', 'no-referrer');
    if (!request.url.startsWith('/docs')) {
      reply.header('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
      if (!reply.hasHeader('Cache-Control')) reply.header('Cache-Control', 'no-store');
    }
    return payload;
  });
}
