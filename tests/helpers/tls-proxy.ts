import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request, type OutgoingHttpHeaders } from 'node:http';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TlsProxy {
  origin: string;
  /** Whether requests get `X-Forwarded-Proto: https` (on by default; some proxies do not send it). */
  forwardsProto: boolean;
  close(): Promise<void>;
}

/**
 * The TLS-terminating proxy production puts in front of the portal: https on `port` (a throwaway
 * self-signed certificate for 127.0.0.1, made with openssl), plain http to `target`, adding
 * `X-Forwarded-For` and, unless told otherwise, `X-Forwarded-Proto: https` as nginx does. Callers
 * must accept the certificate (see tests/guards-https.test.ts).
 */
export async function startTlsProxy(options: { port: number; target: string }): Promise<TlsProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'atrium-tls-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const target = new URL(options.target);
  const proxy = { forwardsProto: true };
  const server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (incoming, outgoing) => {
    const headers: OutgoingHttpHeaders = { ...incoming.headers, 'x-forwarded-for': incoming.socket.remoteAddress ?? '127.0.0.1' };
    if (proxy.forwardsProto) headers['x-forwarded-proto'] = 'https';
    // One connection per request on both sides, so no test ever races an idle keep-alive close.
    const upstream = request({ host: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers, agent: false }, (answer) => {
      outgoing.writeHead(answer.statusCode ?? 502, { ...answer.headers, connection: 'close' });
      answer.pipe(outgoing);
    });
    upstream.on('error', () => {
      if (!outgoing.headersSent) outgoing.writeHead(502);
      outgoing.end();
    });
    incoming.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  return Object.assign(proxy, {
    origin: `https://127.0.0.1:${options.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        rmSync(dir, { recursive: true, force: true });
      }),
  });
}
