import net from 'node:net';
import { createTestContext, type TestContext } from './context.js';

/**
 * A loopback TCP proxy the test can cut and restore: the store "goes away" and "comes back"
 * for real, without touching the shared PostgreSQL server.
 */
export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  readonly #pairs = new Set<readonly [net.Socket, net.Socket]>();
  #server: net.Server | undefined;
  port = 0;
  /** Connections accepted since the start. */
  accepted = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async start(): Promise<void> {
    if (this.#server) return;
    const server = net.createServer((client) => {
      this.accepted += 1;
      const upstream = net.connect(this.#target.port, this.#target.host);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      const pair = [client, upstream] as const;
      this.#pairs.add(pair);
      client.pipe(upstream).pipe(client);
      client.on('close', () => {
        this.#pairs.delete(pair);
        upstream.destroy();
      });
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  /**
   * The open connections stop carrying anything, either way, but stay open: a server that went
   * away without a word (a failover, a partition). New connections still reach the target.
   */
  freeze(): void {
    for (const [client, upstream] of this.#pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
    this.#pairs.clear();
  }

  /** Refuses new connections and cuts the open ones. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/**
 * A PostgreSQL test context whose store (and change feed) connects through a TcpProxy, so that a
 * test can cut the database away and bring it back. `close` restores the proxy first, so that the
 * context can drop its database.
 */
export async function createProxiedPostgresContext(settings: Record<string, string> = {}): Promise<{
  ctx: TestContext;
  proxy: TcpProxy;
  close(): Promise<void>;
}> {
  const proxy = new TcpProxy({ host: '127.0.0.1', port: 5432 });
  await proxy.start();
  const ctx = await createTestContext('postgres', settings, {
    routeDatabaseUrl: (url) => {
      const routed = new URL(url);
      routed.hostname = '127.0.0.1';
      routed.port = String(proxy.port);
      return routed.toString();
    },
  });
  return {
    ctx,
    proxy,
    async close() {
      await proxy.start();
      await ctx.close();
      await proxy.stop();
    },
  };
}
