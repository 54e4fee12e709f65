/**
 * A TCP proxy between a client and one etcd endpoint, to simulate network trouble without touching etcd:
 * `pause()` is a silent partition (connections hang), `cut()` is a hard one (connections reset, new ones refused).
 * It only moves bytes, so gRPC/HTTP2 passes through untouched.
 */
import net from 'node:net';

/** A running proxy from {@link startProxy}. */
export interface TcpProxy {
  /** `127.0.0.1:<port>`: give this to the client instead of the etcd endpoint. */
  readonly endpoint: string;
  /** Stop forwarding in both directions; sockets stay open, so calls hang. New connections hang too. */
  pause(): void;
  /** Forward again, delivering whatever waited while paused. */
  resume(): void;
  /** Reset every connection (TCP RST) and reset new ones at once, until {@link heal}. */
  cut(): void;
  /** Accept connections normally again after {@link cut}. */
  heal(): void;
  /** Close the listener and every connection. Idempotent. */
  close(): Promise<void>;
}

interface Connection {
  client: net.Socket;
  upstream: net.Socket;
}

/**
 * Starts a proxy on a free loopback port forwarding to `target` (`host:port`).
 *
 * @example
 * const proxy = await startProxy(etcd.endpoint);
 * after(() => proxy.close());
 * const client = new Etcd3({ hosts: proxy.endpoint });
 * proxy.pause();   // the client's calls now hang
 * proxy.resume();
 */
export async function startProxy(target: string): Promise<TcpProxy> {
  const separator = target.lastIndexOf(':');
  const host = target.slice(0, separator).replace(/^\[|\]$/g, '');
  const port = Number(target.slice(separator + 1));
  if (separator < 1 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`Expected \`target\` to be host:port, got ${JSON.stringify(target)}`);
  }

  const connections = new Set<Connection>();
  let paused = false;
  let cut = false;

  // Not stream.pipe(): its 'drain' handler resumes the source, which would undo pause().
  const forward = (from: net.Socket, to: net.Socket): void => {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (!paused) from.resume();
    });
    from.on('end', () => to.end());
  };

  const server = net.createServer((client) => {
    if (cut) {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host, port });
    const connection = { client, upstream };
    connections.add(connection);
    const teardown = (): void => {
      connections.delete(connection);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', teardown);
      socket.on('close', teardown);
    }
    forward(client, upstream);
    forward(upstream, client);
    if (paused) {
      client.pause();
      upstream.pause();
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const endpoint = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  let closed: Promise<void> | undefined;

  return {
    endpoint,
    pause() {
      paused = true;
      for (const { client, upstream } of connections) {
        client.pause();
        upstream.pause();
      }
    },
    resume() {
      paused = false;
      for (const { client, upstream } of connections) {
        client.resume();
        upstream.resume();
      }
    },
    cut() {
      cut = true;
      for (const connection of connections) {
        connections.delete(connection);
        connection.client.resetAndDestroy();
        connection.upstream.resetAndDestroy();
      }
    },
    heal() {
      cut = false;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const { client, upstream } of connections) {
          client.destroy();
          upstream.destroy();
        }
        connections.clear();
      });
      return closed;
    },
  };
}
