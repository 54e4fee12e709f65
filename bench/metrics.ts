/**
 * Counters from etcd's Prometheus endpoint (`/metrics` on the client URL): what the server saw, whatever the
 * client library does. etcd 3.4 serves the gRPC server counters with its default `--metrics basic`.
 */

export interface GrpcCounts {
  /** LeaseKeepAlive messages received: one per keepalive request. */
  keepaliveMessages: number;
  /** LeaseKeepAlive streams opened, and of those, closed. */
  keepaliveStreamsStarted: number;
  keepaliveStreamsHandled: number;
  /** Watch streams opened. */
  watchStreamsStarted: number;
}

function sum(text: string, metric: string, service: string, method: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith(`${metric}{`) &&
      line.includes(`grpc_method="${method}"`) &&
      line.includes(`grpc_service="${service}"`)
    ) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

/** Sums each counter over every member. */
export async function grpcCounts(endpoints: string[]): Promise<GrpcCounts> {
  const texts = await Promise.all(
    endpoints.map(async (endpoint) => (await fetch(`http://${endpoint}/metrics`)).text()),
  );
  const total = (metric: string, service: string, method: string) =>
    texts.reduce((n, text) => n + sum(text, metric, `etcdserverpb.${service}`, method), 0);
  return {
    keepaliveMessages: total('grpc_server_msg_received_total', 'Lease', 'LeaseKeepAlive'),
    keepaliveStreamsStarted: total('grpc_server_started_total', 'Lease', 'LeaseKeepAlive'),
    keepaliveStreamsHandled: total('grpc_server_handled_total', 'Lease', 'LeaseKeepAlive'),
    watchStreamsStarted: total('grpc_server_started_total', 'Watch', 'Watch'),
  };
}
