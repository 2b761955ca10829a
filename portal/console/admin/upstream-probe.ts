import { connect } from 'node:net';

const PROBE_TIMEOUT_MS = 1_000;

/**
 * Whether something accepts connections at an upstream's address: the cheapest honest "up" (an
 * HTTP request would reach the app's own code, with its side effects and its slowness). Bounded in
 * time, so a black-holed address makes the Apps page a second slower, never stuck.
 */
export function acceptsConnections(url: URL): Promise<boolean> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (up: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(up);
    };
    const timer = setTimeout(() => finish(false), PROBE_TIMEOUT_MS);
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}
