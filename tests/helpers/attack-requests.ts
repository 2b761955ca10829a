import { request as httpRequest } from 'node:http';
import type { HostAgent, HostResponse } from './host-agent.ts';

/**
 * One request from a HostAgent's browser with a body of any type and bytes (a beacon's text/plain,
 * JSON, gzip, a huge form): the agent's cookies for the URL's host are sent, its jar is not updated.
 * HostAgent.request only sends forms; attacks need everything else too.
 */
export function sendAs(agent: HostAgent, method: string, target: string, options: { body?: string | Buffer; headers?: Record<string, string>; cookies?: boolean } = {}): Promise<HostResponse> {
  const url = new URL(target);
  const headers: Record<string, string> = { Host: url.host, Accept: 'application/json', ...options.headers };
  const cookie = [...agent.jar(url.host)].map(([k, v]) => `${k}=${v}`).join('; ');
  if (cookie && options.cookies !== false && !headers.Cookie) headers.Cookie = cookie;
  const body = options.body;
  if (body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: agent.port, method, path: `${url.pathname}${url.search}`, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const location = res.headers.location;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          setCookies: ([] as string[]).concat(res.headers['set-cookie'] ?? []),
          location: location === undefined ? undefined : new URL(location, url).href,
          text,
          url: url.href,
          json: () => JSON.parse(text),
        });
      });
    });
    // A server that refuses early may close while the body is still being written.
    req.on('error', reject);
    req.end(body);
  });
}
