import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * HTTP/1.1 on the wire, for tests that must see (or send) exactly the bytes: a strict message
 * parser (RFC 9112 framing, no obs-fold, one Content-Length, `chunked` alone), an upstream app
 * server built on it that records every request it parses per connection and answers with whatever
 * bytes a test scripts, and a raw client that reads the portal's answers off one socket.
 */

export interface WireMessage {
  startLine: string;
  /** Header lines in order, names as sent. */
  headers: Array<[string, string]>;
  body: Buffer;
}

/** All values of a header (case-insensitive), in order. */
export function headerValues(message: WireMessage, name: string): string[] {
  const lower = name.toLowerCase();
  return message.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

type Parsed = { message: WireMessage; end: number } | 'incomplete' | { error: string };
/** How a message's body is delimited: requests by their headers; responses also by status and the request's method. */
export type BodyRule = 'request' | 'head' | { response: { method: string } };

/** One message from `buf` at `offset`, strictly (`head`: a request's head alone, its body not looked for). `until close` bodies are returned as what is there so far when `closed`. */
export function parseMessage(buf: Buffer, offset: number, rule: BodyRule, closed = false): Parsed {
  const headEnd = buf.indexOf('\r\n\r\n', offset);
  if (headEnd < 0) return closed && buf.length > offset ? { error: 'connection closed inside a head' } : 'incomplete';
  const lines = buf.subarray(offset, headEnd).toString('latin1').split('\r\n');
  const startLine = lines.shift() ?? '';
  const headers: Array<[string, string]> = [];
  for (const line of lines) {
    if (line.startsWith(' ') || line.startsWith('\t')) return { error: `obs-fold line ${JSON.stringify(line)}` };
    const colon = line.indexOf(':');
    const name = colon < 0 ? '' : line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name)) return { error: `bad header name in ${JSON.stringify(line)}` };
    if (!FIELD_VALUE.test(value) || value.includes('\r') || value.includes('\n')) return { error: `bad header value in ${JSON.stringify(line)}` };
    headers.push([name, value]);
  }
  const message: WireMessage = { startLine, headers, body: Buffer.alloc(0) };
  const bodyStart = headEnd + 4;
  if (rule === 'head') return { message, end: bodyStart };
  if (rule === 'request') {
    if (!/^[A-Z]+ \S+ HTTP\/1\.1$/.test(startLine)) return { error: `bad request line ${JSON.stringify(startLine)}` };
  } else {
    const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(startLine);
    if (!status) return { error: `bad status line ${JSON.stringify(startLine)}` };
    const code = Number(status[1]);
    if (rule.response.method === 'HEAD' || code < 200 || code === 204 || code === 304) return { message, end: bodyStart };
  }
  const te = headerValues(message, 'transfer-encoding');
  const cl = headerValues(message, 'content-length');
  if (te.length > 0) {
    if (cl.length > 0) return { error: 'both Transfer-Encoding and Content-Length' };
    if (te.length !== 1 || te[0]!.toLowerCase() !== 'chunked') return { error: `Transfer-Encoding ${JSON.stringify(te)}` };
    return parseChunked(buf, bodyStart, message, closed);
  }
  if (cl.length > 1) return { error: `Content-Length given ${cl.length} times` };
  if (cl.length === 1) {
    if (!/^\d+$/.test(cl[0]!)) return { error: `Content-Length ${JSON.stringify(cl[0])}` };
    const length = Number(cl[0]);
    if (buf.length - bodyStart < length) return closed ? { error: 'connection closed inside a body' } : 'incomplete';
    message.body = buf.subarray(bodyStart, bodyStart + length);
    return { message, end: bodyStart + length };
  }
  if (rule === 'request') return { message, end: bodyStart };
  // A response without framing runs until the connection closes.
  if (!closed) return 'incomplete';
  message.body = buf.subarray(bodyStart);
  return { message, end: buf.length };
}

function parseChunked(buf: Buffer, start: number, message: WireMessage, closed: boolean): Parsed {
  const chunks: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at);
    if (lineEnd < 0) return closed ? { error: 'connection closed inside a chunked body' } : 'incomplete';
    const sizeLine = buf.subarray(at, lineEnd).toString('latin1');
    const size = /^([0-9a-fA-F]+)(?:;.*)?$/.exec(sizeLine);
    if (!size) return { error: `bad chunk size ${JSON.stringify(sizeLine)}` };
    const length = parseInt(size[1]!, 16);
    at = lineEnd + 2;
    if (length === 0) {
      // Trailers, then the empty line.
      const trailersEnd = buf.indexOf('\r\n', at) === at ? at : buf.indexOf('\r\n\r\n', at);
      if (trailersEnd < 0) return closed ? { error: 'connection closed inside trailers' } : 'incomplete';
      message.body = Buffer.concat(chunks);
      return { message, end: trailersEnd === at ? at + 2 : trailersEnd + 4 };
    }
    if (buf.length < at + length + 2) return closed ? { error: 'connection closed inside a chunk' } : 'incomplete';
    if (buf.subarray(at + length, at + length + 2).toString('latin1') !== '\r\n') return { error: 'chunk not followed by CRLF' };
    chunks.push(buf.subarray(at, at + length));
    at += length + 2;
  }
}

/** A request as an upstream parsed it off one of its connections. */
export interface SeenRequest extends WireMessage {
  /** Which accepted connection (1, 2, …) it came on, and its index on that connection (0, 1, …). */
  connection: number;
  index: number;
  method: string;
  path: string;
}

/** What a scripted upstream is given to answer one request with. */
export interface Exchange {
  request: SeenRequest;
  socket: Socket;
  /** Writes a well-framed JSON answer (what the default echo does), then arms the idle close. */
  json(value: unknown, status?: number): void;
}

export interface WireUpstream {
  url: string;
  port: number;
  requests: SeenRequest[];
  /** What the strict parser refused, per connection: a portal that frames a request badly shows here. */
  malformed: Array<{ connection: number; reason: string; bytes: string }>;
  accepted(): number;
  open(): number;
  /** Resolves with the next request whose path starts with `prefix` (its head and body parsed). */
  next(prefix: string): Promise<SeenRequest>;
  /** Resolves once the open connections are at most `count`, or rejects after `ms`. */
  openAtMost(count: number, ms: number): Promise<void>;
  close(): Promise<void>;
}

/** The identity the upstream answers with by default: who the portal said the request is for. */
export function echoOf(request: SeenRequest): Record<string, unknown> {
  return {
    user: headerValues(request, 'x-atrium-user').join(','),
    email: headerValues(request, 'x-atrium-email').join(','),
    path: request.path,
    method: request.method,
    bodyLength: request.body.length,
    connection: request.connection,
  };
}

/**
 * An upstream app on raw TCP. `script` answers a request by writing to the socket itself and
 * returning true; otherwise the request gets `echoOf` as JSON. With `idleCloseMs` a connection is
 * ended (FIN) that long after its last byte in either direction, as app servers do with their
 * keep-alive timeout, without any Keep-Alive header saying so.
 */
export async function startWireUpstream(options: { script?: (exchange: Exchange) => boolean; idleCloseMs?: number; onHead?: (head: WireMessage, connection: number) => void } = {}): Promise<WireUpstream> {
  const requests: SeenRequest[] = [];
  const malformed: WireUpstream['malformed'] = [];
  const sockets = new Set<Socket>();
  const waiters: Array<{ prefix: string; resolve: (r: SeenRequest) => void }> = [];
  const openWaiters = new Set<() => void>();
  let accepted = 0;

  const server: Server = createServer((socket) => {
    const connection = ++accepted;
    sockets.add(socket);
    let buffer = Buffer.alloc(0);
    let index = 0;
    let headSeen = false;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (options.idleCloseMs === undefined) return;
      clearTimeout(idle);
      idle = setTimeout(() => socket.end(), options.idleCloseMs);
    };
    armIdle();
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(idle);
      sockets.delete(socket);
      for (const check of openWaiters) check();
    });
    socket.on('data', (data: Buffer) => {
      armIdle();
      buffer = Buffer.concat([buffer, data]);
      for (;;) {
        if (!headSeen && options.onHead) {
          const headEnd = buffer.indexOf('\r\n\r\n');
          if (headEnd >= 0) {
            headSeen = true;
            const head = parseMessage(buffer.subarray(0, headEnd + 4), 0, 'head');
            if (typeof head === 'object' && 'message' in head) options.onHead(head.message, connection);
          }
        }
        const parsed = parseMessage(buffer, 0, 'request');
        if (parsed === 'incomplete') return;
        if ('error' in parsed) {
          malformed.push({ connection, reason: parsed.error, bytes: buffer.subarray(0, 400).toString('latin1') });
          socket.destroy();
          return;
        }
        buffer = buffer.subarray(parsed.end);
        headSeen = false;
        const [method = '', path = ''] = parsed.message.startLine.split(' ');
        const request: SeenRequest = { ...parsed.message, body: Buffer.from(parsed.message.body), connection, index: index++, method, path };
        requests.push(request);
        for (const waiter of [...waiters]) {
          if (!path.startsWith(waiter.prefix)) continue;
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(request);
        }
        const exchange: Exchange = {
          request,
          socket,
          json(value, status = 200) {
            const body = Buffer.from(JSON.stringify(value));
            socket.write(`HTTP/1.1 ${status} OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
            socket.write(body, armIdle);
          },
        };
        if (!options.script?.(exchange)) exchange.json(echoOf(request));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    malformed,
    accepted: () => accepted,
    open: () => sockets.size,
    next: (prefix) => new Promise((resolve) => waiters.push({ prefix, resolve })),
    openAtMost: (count, ms) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (sockets.size > count) return;
          openWaiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          openWaiters.delete(check);
          reject(new Error(`${sockets.size} upstream connections still open after ${ms} ms (wanted at most ${count})`));
        }, ms);
        openWaiters.add(check);
        check();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A client's view of one raw connection to the portal: what it sent, the answers parsed as they come. */
export interface WireClient {
  socket: Socket;
  /** Writes bytes as they are. */
  send(bytes: string | Buffer): void;
  /**
   * Resolves with the next complete answer to a request of `method` (1xx answers are returned as
   * they come too), or `closed` if the connection ends first, or rejects after `ms`.
   */
  answer(method: string, ms: number): Promise<WireMessage | 'closed'>;
  /** Every byte received so far. */
  received(): Buffer;
  close(): void;
}

export function wireClient(port: number): Promise<WireClient> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    let all = Buffer.alloc(0);
    let closed = false;
    let wake: (() => void) | undefined;
    socket.on('data', (data: Buffer) => {
      buffer = Buffer.concat([buffer, data]);
      all = Buffer.concat([all, data]);
      wake?.();
    });
    socket.on('close', () => {
      closed = true;
      wake?.();
    });
    socket.on('error', () => undefined);
    socket.once('connect', () =>
      resolve({
        socket,
        send: (bytes) => socket.write(bytes),
        received: () => all,
        close: () => socket.destroy(),
        answer: (method, ms) =>
          new Promise((done, fail) => {
            const timer = setTimeout(() => {
              wake = undefined;
              fail(new Error(`no complete answer within ${ms} ms; received so far: ${JSON.stringify(buffer.subarray(0, 600).toString('latin1'))}`));
            }, ms);
            const tryParse = () => {
              const parsed = parseMessage(buffer, 0, { response: { method } }, closed);
              if (parsed === 'incomplete') return;
              if ('error' in parsed) {
                if (!closed) return;
                wake = undefined;
                clearTimeout(timer);
                // A connection that ended inside an answer: what was there is reported as closed.
                done('closed');
                return;
              }
              wake = undefined;
              clearTimeout(timer);
              buffer = buffer.subarray(parsed.end);
              done(parsed.message);
            };
            wake = () => {
              if (closed && buffer.length === 0) {
                wake = undefined;
                clearTimeout(timer);
                done('closed');
                return;
              }
              tryParse();
            };
            wake();
          }),
      }),
    );
    socket.once('error', reject);
  });
}
