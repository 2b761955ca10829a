import { sendRaw, type HostAgent, type HostResponse } from './host-agent.ts';

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
  return sendRaw(agent.port, method, url, headers, body);
}
