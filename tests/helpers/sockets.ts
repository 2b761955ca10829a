import type { Agent as HttpAgent } from 'node:http';
import { io, type Socket } from 'socket.io-client';
import type { Agent } from './agent.ts';

export function cookieHeader(agent: Agent): string {
  return [...agent.cookies.values()].map((c) => `${c.name}=${c.value}`).join('; ');
}

export type ConnectResult = { ok: true; socket: Socket } | { ok: false; message: string };

/** Connects to a namespace with a browser's cookies; resolves on connect or connect_error. */
export function connect(
  origin: string,
  namespace: string,
  cookie?: string,
  transports: ('websocket' | 'polling')[] = ['websocket'],
  headers: Record<string, string> = {},
  agent?: HttpAgent,
): Promise<ConnectResult> {
  const socket = io(`${origin}${namespace}`, {
    ...(agent ? { agent: agent as unknown as string } : {}),
    path: '/socket.io/',
    transports,
    reconnection: false,
    forceNew: true,
    timeout: 5_000,
    extraHeaders: { ...headers, ...(cookie ? { Cookie: cookie } : {}) },
  });
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ ok: true, socket }));
    socket.once('connect_error', (err) => {
      socket.close();
      resolve({ ok: false, message: err.message });
    });
  });
}

/** Resolves when the socket is disconnected by the server, with how long it took. */
export function disconnected(socket: Socket, timeoutMs = 3_000): Promise<number> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    if (!socket.connected) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`still connected after ${timeoutMs} ms`)), timeoutMs);
    socket.once('disconnect', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}
