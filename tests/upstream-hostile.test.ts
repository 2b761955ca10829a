import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { headerValues, startWireUpstream, wireClient, type Exchange, type SeenRequest, type WireMessage, type WireUpstream } from './helpers/wire.ts';

/**
 * The portal's HTTP proxy keeps upstream connections alive and shares them between requests and
 * between users (portal/apps/forwarder.ts). Attacked here as a hostile (or merely broken) app and
 * a hostile client would: an app's bytes meant for one user never reach another, a client cannot
 * frame a second request into the portal's connection to the app, the app's hop-by-hop headers
 * stay on its hop, clients walking away free their upstream connection, and an app that closes
 * idle connections at its own keep-alive timeout costs no request a 502.
 *
 * Users: A is ea@example.com, B is devel@example.com (both may open ea apps).
 */

/** Generous: a failure to answer, not a slow answer, is what these catch. */
const DEADLINE_MS = 15_000;

const A_EMAIL = 'ea@example.com';
const B_EMAIL = 'devel@example.com';

let portal: TestPortal;
let portalPort: number;
let userA: Agent;
let userB: Agent;
/** Scripted misbehaviour, by path, on the app every reuse and response-header case goes to. */
let hostile: WireUpstream;
let smuggle: WireUpstream;
let drops: WireUpstream;
let idleCloser: WireUpstream;
/** Closes a kept-alive connection on its second request instead of answering: the keep-alive race, made certain. */
let crossing: WireUpstream;
let nodeIdle: HttpServer;
let nodeIdleAccepted = 0;
/** Who waits for the next request head the drops app reads (before its body). */
const dropsHeads: Array<(startLine: string) => void> = [];

/** Sockets of answers left open on purpose, and what to write on them once the next echo request arrives. */
const held: Array<{ socket: Exchange['socket']; rest: string }> = [];
/** Resolves when a delayed extra answer has been written to the (idle) connection. */
let extraWritten: Promise<void> = Promise.resolve();

/** A well-framed answer carrying the identity the portal gave `request` (that user's data), marked LEAK. */
function leakAnswer(request: SeenRequest): string {
  const body = JSON.stringify({ user: headerValues(request, 'x-atrium-user').join(','), email: headerValues(request, 'x-atrium-email').join(','), leak: 'LEAK' });
  return `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}
function okAnswer(request: SeenRequest): string {
  const body = JSON.stringify({ email: headerValues(request, 'x-atrium-email').join(','), first: true });
  return `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** What the hostile app does for `/case/<name>`: raw bytes, as a broken or malicious app server writes them. */
const CASES: Record<string, (exchange: Exchange) => void> = {
  'two-responses': ({ request, socket }) => socket.write(okAnswer(request) + leakAnswer(request)),
  'trailing-garbage': ({ request, socket }) => socket.write(`${okAnswer(request)}LEAK ${headerValues(request, 'x-atrium-email')} garbage\r\n\r\n`),
  'extra-answer-later': ({ request, socket }) => {
    socket.write(okAnswer(request));
    extraWritten = new Promise((resolve) => setTimeout(() => socket.write(leakAnswer(request), () => resolve()), 100));
  },
  'length-shorter': ({ request, socket }) => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello${leakAnswer(request)}`),
  'length-longer-then-close': ({ socket }) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789'),
  'length-longer-held': ({ request, socket }) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
    held.push({ socket, rest: leakAnswer(request).padEnd(300, ' ') + leakAnswer(request) });
  },
  'head-with-body': ({ request, socket }) => {
    const body = leakAnswer(request);
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  },
  '204-with-body': ({ request, socket }) => socket.write(`HTTP/1.1 204 No Content\r\n\r\n${leakAnswer(request)}`),
  '204-with-length-and-body': ({ request, socket }) => {
    const body = leakAnswer(request);
    socket.write(`HTTP/1.1 204 No Content\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  },
  '304-with-body': ({ request, socket }) => {
    const body = leakAnswer(request);
    socket.write(`HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  },
  '304-with-length': ({ socket }) => socket.write('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 1234\r\n\r\n'),
  '204-with-length-0': ({ socket }) => socket.write('HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n'),
  'volunteered-100': ({ socket }) => socket.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal'),
  'early-hints-103': ({ socket }) => socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal'),
  'chunked-garbage': ({ request, socket }) => socket.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nLEAK\r\n0\r\n\r\n${leakAnswer(request)}`),
  'length-and-chunked': ({ request, socket }) =>
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${leakAnswer(request)}`),
  'chunked-never-ends': ({ request, socket }) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    held.push({ socket, rest: `0\r\n\r\n${leakAnswer(request)}` });
  },
  // The app's hop-by-hop and framing headers.
  'hop-headers': ({ socket }) =>
    socket.write(
      'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=1, max=1\r\nX-Secret: s3cret\r\nUpgrade: h2c\r\nProxy-Connection: close\r\n' +
        'Trailer: X-Trailer\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n',
    ),
  'connection-close': ({ socket }) => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello'),
  'connection-close-no-length': ({ socket }) => socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello until close'),
  'upgrade-on-200': ({ socket }) => socket.write('HTTP/1.1 200 OK\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nok'),
  'bad-char-ctl': ({ socket }) => socket.write('HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok'),
  'bad-char-del': ({ socket }) => socket.write('HTTP/1.1 200 OK\r\nX-Bad: a\x7fb\r\nContent-Length: 2\r\n\r\nok'),
  'bad-char-lone-cr': ({ socket }) => socket.write('HTTP/1.1 200 OK\r\nX-Bad: a\rSet-Cookie: atrium.sid=planted\r\nContent-Length: 2\r\n\r\nok'),
  'bad-header-name': ({ socket }) => socket.write('HTTP/1.1 200 OK\r\nX Bad(: 1\r\nContent-Length: 2\r\n\r\nok'),
  'set-cookie-1000': ({ socket }) => socket.write(manyCookies(1000)),
  'set-cookie-400': ({ socket }) => socket.write(manyCookies(400)),
};
/** Half the Set-Cookie lines are portal cookies (each spelling in turn), half the app's own. */
const PORTAL_SPELLINGS = ['atrium.sid', 'ATRIUM.SID.sig', '__Host-atrium.sid', 'atrium.auth.x', 'atrium'];
function manyCookies(count: number): string {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`Set-Cookie: ${PORTAL_SPELLINGS[i % 10] ?? `app${i}`}=${i}; Path=/`);
  return `HTTP/1.1 200 OK\r\n${lines.join('\r\n')}\r\nContent-Length: 2\r\n\r\nok`;
}

beforeAll(async () => {
  hostile = await startWireUpstream({
    script: (exchange) => {
      const name = exchange.request.path.replace(/^\/case\//, '').replace(/\?.*$/, '');
      const act = exchange.request.path.startsWith('/case/') ? CASES[name] : undefined;
      if (act) {
        act(exchange);
        return true;
      }
      // An ordinary request: whatever answers were left hanging are finished now, first.
      for (const { socket, rest } of held.splice(0)) socket.write(rest);
      return false;
    },
  });
  smuggle = await startWireUpstream();
  drops = await startWireUpstream({
    onHead: (message) => dropsHeads.shift()?.(message.startLine),
    script: ({ request, socket }) => {
      if (request.path !== '/big') return false;
      // 64 MB, written as fast as the portal takes it: the client leaves long before the end.
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 67108864\r\n\r\n');
      const chunk = Buffer.alloc(65_536, 'd');
      let sent = 0;
      const pump = () => {
        while (sent < 1024 && !socket.destroyed) {
          sent++;
          if (!socket.write(chunk)) return socket.once('drain', pump);
        }
      };
      pump();
      return true;
    },
  });
  idleCloser = await startWireUpstream({ idleCloseMs: 1_000 });
  const crossed = new Set<string>();
  crossing = await startWireUpstream({
    script: ({ request, socket }) => {
      if (request.index === 0 || crossed.has(request.path)) return false;
      crossed.add(request.path);
      socket.end();
      return true;
    },
  });
  nodeIdle = createHttpServer((req, res) => res.end(JSON.stringify({ email: req.headers['x-atrium-email'] })));
  nodeIdle.keepAliveTimeout = 1_000;
  nodeIdle.on('connection', () => nodeIdleAccepted++);
  await new Promise<void>((resolve) => nodeIdle.listen(0, '127.0.0.1', resolve));
  const apps = makeAppsDir({
    'ea/hostile/app.json': JSON.stringify({ upstream: hostile.url }),
    'ea/smuggle/app.json': JSON.stringify({ upstream: smuggle.url }),
    'ea/drops/app.json': JSON.stringify({ upstream: drops.url }),
    'ea/idle/app.json': JSON.stringify({ upstream: idleCloser.url }),
    'ea/crossing/app.json': JSON.stringify({ upstream: crossing.url }),
    'ea/nodeidle/app.json': JSON.stringify({ upstream: `http://127.0.0.1:${(nodeIdle.address() as AddressInfo).port}` }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  portalPort = Number(new URL(portal.origin).port);
  userA = new Agent(portal.origin);
  await userA.login(A_EMAIL, DEMO_PASSWORD);
  userB = new Agent(portal.origin);
  await userB.login(B_EMAIL, DEMO_PASSWORD);
}, 90_000);

/** For the report: after each case, which upstream connection B's request went on and what B got. */
const observed: string[] = [];

afterAll(async () => {
  if (process.env.HOSTILE_REPORT) console.log(observed.join('\n'), `\nidle closer accepted ${idleCloser?.accepted()}, node idle accepted ${nodeIdleAccepted}, drops accepted ${drops?.accepted()}`);
  await portal?.stopAll();
  for (const { socket } of held.splice(0)) socket.destroy();
  await Promise.all([hostile?.close(), smuggle?.close(), drops?.close(), idleCloser?.close(), crossing?.close()]);
  nodeIdle?.closeAllConnections();
  await new Promise<void>((resolve) => (nodeIdle ? nodeIdle.close(() => resolve()) : resolve()));
});

/** A request's head as a browser of `agent` sends it, to the portal. */
function head(agent: Agent, method: string, path: string, extra = ''): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${portalPort}\r\nCookie: ${cookieHeader(agent)}\r\nAccept: application/json\r\n${extra}\r\n`;
}

/** One request on a new connection to the portal; its answer as parsed off the wire, or `closed`. */
async function ask(agent: Agent, method: string, path: string, extra = ''): Promise<WireMessage | 'closed'> {
  const client = await wireClient(portalPort);
  try {
    client.send(head(agent, method, path, extra));
    return await client.answer(method, DEADLINE_MS);
  } finally {
    client.close();
  }
}

function describeAnswer(answer: WireMessage | 'closed'): string {
  return answer === 'closed' ? 'connection closed without a complete answer' : `${answer.startLine} ${JSON.stringify(answer.body.toString('latin1').slice(0, 300))}`;
}
const statusOf = (answer: WireMessage | 'closed') => (answer === 'closed' ? 0 : Number(answer.startLine.split(' ')[1]));

/**
 * B asks the app for its own page: the answer must be B's (the upstream's echo of the identity the
 * portal gave this request) or a clear 502 — never A's bytes.
 */
async function expectBsOwnAnswer(app: string): Promise<WireMessage> {
  const answer = await ask(userB, 'GET', `/apps/ea/${app}/mine`);
  if (app === 'hostile') {
    const caseRequest = hostile.requests.findLast((r) => r.path.startsWith('/case/'));
    const mine = hostile.requests.findLast((r) => r.path === '/mine');
    observed.push(`${caseRequest?.path} (connection ${caseRequest?.connection}) → B: ${statusOf(answer)} on connection ${mine?.connection}`);
  }
  expect(answer, 'B got no complete answer').not.toBe('closed');
  const message = answer as WireMessage;
  const text = message.body.toString('latin1');
  expect(text).not.toContain('LEAK');
  expect(text).not.toContain(A_EMAIL);
  expect([200, 502], describeAnswer(answer)).toContain(statusOf(answer));
  if (statusOf(answer) === 200) expect(JSON.parse(text)).toMatchObject({ email: B_EMAIL, path: '/mine' });
  return message;
}

describe('a connection reused after a broken answer to user A gives user B only B’s own answer', () => {
  it('(the premise) after a well-formed answer to A, B’s request goes on the same kept-alive connection', async () => {
    const a = await ask(userA, 'GET', '/apps/ea/hostile/premise');
    const b = await ask(userB, 'GET', '/apps/ea/hostile/premise');
    const [forA, forB] = [a, b].map((answer) => JSON.parse((answer as WireMessage).body.toString()));
    expect(forA).toMatchObject({ email: A_EMAIL });
    expect(forB).toMatchObject({ email: B_EMAIL, connection: forA.connection });
  });

  const simple = ['two-responses', 'trailing-garbage', 'length-shorter', 'length-longer-then-close', 'chunked-garbage', 'length-and-chunked', '204-with-body', '204-with-length-and-body'];
  it.each(simple)('%s', async (name) => {
    const a = await ask(userA, 'GET', `/apps/ea/hostile/case/${name}`);
    observed.push(`${name} → A: ${describeAnswer(a)}`);
    // A got A's own app's bytes (or a cut-off/502): never the next answer of the connection.
    if (name === 'length-longer-then-close') expect(a, `a truncated body must not look complete: ${describeAnswer(a)}`).toBe('closed');
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  it('an extra answer written on the idle connection after a complete one', async () => {
    await ask(userA, 'GET', '/apps/ea/hostile/case/extra-answer-later');
    await extraWritten;
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  it('a HEAD answered with a body (a whole answer of A’s data)', async () => {
    const a = await ask(userA, 'HEAD', '/apps/ea/hostile/case/head-with-body');
    observed.push(`head-with-body → A: ${describeAnswer(a)}`);
    expect(statusOf(a), describeAnswer(a)).toBe(200);
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  it('a 304 with a body', async () => {
    observed.push(`304-with-body → A: ${describeAnswer(await ask(userA, 'GET', '/apps/ea/hostile/case/304-with-body', 'If-None-Match: "x"\r\n'))}`);
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  // Well-formed answers next to those: RFC 9110 §8.6 lets a 304 carry the Content-Length of the
  // representation it stands for; a 204 with Content-Length: 0 is common.
  it.each([
    ['304-with-length', 304],
    ['204-with-length-0', 204],
  ])('%s (no body; a valid answer) reaches A as it is, and B after it gets B’s own', async (name, status) => {
    const a = await ask(userA, 'GET', `/apps/ea/hostile/case/${name}`, 'If-None-Match: "x"\r\n');
    expect(statusOf(a), describeAnswer(a)).toBe(status);
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  // forwarder.ts: 1xx (Early Hints) are not passed on, the final status follows.
  it('early-hints-103 before the final answer: A gets the final answer, B after it B’s own', async () => {
    const a = await ask(userA, 'GET', '/apps/ea/hostile/case/early-hints-103');
    observed.push(`early-hints-103 → A: ${describeAnswer(a)}`);
    expect(describeAnswer(a)).toBe('HTTP/1.1 200 OK "final"');
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  // A 100 Continue nobody asked for is refused by undici (it drops that connection): a clear 502, never a mix-up.
  it('volunteered-100 before the final answer: A gets a clear 502, B after it B’s own', async () => {
    const a = await ask(userA, 'GET', '/apps/ea/hostile/case/volunteered-100');
    observed.push(`volunteered-100 → A: ${describeAnswer(a)}`);
    expect(describeAnswer(a)).toMatch(/^HTTP\/1\.1 502 Bad Gateway .*upstream_unavailable/);
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
  });

  it.each(['chunked-never-ends', 'length-longer-held'])('%s: B asks while A’s answer is still open, then the app finishes A’s with an extra answer', async (name) => {
    const seen = hostile.next(`/case/${name}`);
    const a = ask(userA, 'GET', `/apps/ea/hostile/case/${name}`);
    await seen;
    for (let i = 0; i < 3; i++) await expectBsOwnAnswer('hostile');
    // A's answer, whatever the app made of it, is A's: it never carries B's identity.
    const answer = await a;
    observed.push(`${name} → A: ${describeAnswer(answer)}`);
    if (answer !== 'closed') expect(answer.body.toString('latin1')).not.toContain(B_EMAIL);
  });
});

describe('a hostile client cannot frame a second request into the portal’s connection to the app', () => {
  let subA = '';
  beforeAll(async () => {
    const answer = await ask(userA, 'GET', '/apps/ea/smuggle/whoami');
    subA = JSON.parse((answer as WireMessage).body.toString()).user;
    expect(subA).toMatch(/./);
  });

  /**
   * Sends `bytes` (which begin with the client's request) on one connection, then a well-formed
   * sentinel request if the connection is still open; collects answers until the sentinel's (or the
   * close). Then: no 5xx, the app saw at most one request for the case and never a smuggled one, the
   * portal's framing was clean, and the identity headers were the portal's, once each.
   */
  async function attack(name: string, bytes: string): Promise<{ answers: Array<WireMessage | 'closed'>; upstream: SeenRequest[] }> {
    const before = smuggle.requests.length;
    const malformedBefore = smuggle.malformed.length;
    const client = await wireClient(portalPort);
    const answers: Array<WireMessage | 'closed'> = [];
    try {
      client.send(bytes);
      client.send(head(userA, 'GET', `/apps/ea/smuggle/sentinel/${name}`));
      for (let i = 0; i < 4; i++) {
        const answer = await client.answer('GET', DEADLINE_MS);
        answers.push(answer);
        if (answer === 'closed' || answer.body.toString().includes('/sentinel/')) break;
      }
    } finally {
      client.close();
    }
    const upstream = smuggle.requests.slice(before);
    expect(smuggle.malformed.slice(malformedBefore), 'the app received badly framed bytes').toEqual([]);
    for (const answer of answers) expect(statusOf(answer), describeAnswer(answer)).toBeLessThan(500);
    expect(upstream.filter((r) => r.path.includes('smuggled')).map((r) => r.path)).toEqual([]);
    expect(upstream.filter((r) => r.path.startsWith(`/t/${name}`)).length).toBeLessThanOrEqual(1);
    expect(upstream.filter((r) => !r.path.startsWith(`/t/${name}`) && !r.path.startsWith(`/sentinel/${name}`)).map((r) => r.path)).toEqual([]);
    for (const request of upstream) {
      expect(headerValues(request, 'x-atrium-user')).toEqual([subA]);
      expect(headerValues(request, 'x-atrium-email')).toEqual([A_EMAIL]);
      expect(headerValues(request, 'x-atrium-assertion')).toHaveLength(1);
      expect(headerValues(request, 'expect')).toEqual([]);
      expect(request.headers.filter(([n]) => n.toLowerCase().startsWith('x-atrium-')).length).toBe(request.headers.filter(([n]) => n.toLowerCase().startsWith('x-atrium-')).map(([n]) => n.toLowerCase()).filter((n, i, all) => all.indexOf(n) === i).length);
    }
    return { answers, upstream };
  }
  const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Atrium-User: admin-sub\r\n\r\n`;
  const smuggledChunk = `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`;

  it.each([
    ['cl-te', `Content-Length: 4\r\nTransfer-Encoding: chunked\r\n`, `0\r\n\r\n${SMUGGLED}`],
    ['te-cl', `Transfer-Encoding: chunked\r\nContent-Length: ${Buffer.byteLength(`0\r\n\r\n${SMUGGLED}`)}\r\n`, `0\r\n\r\n${SMUGGLED}`],
    ['duplicate-length', `Content-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n`, SMUGGLED],
    ['length-list', `Content-Length: 0, ${SMUGGLED.length}\r\n`, SMUGGLED],
    ['chunked-identity', `Transfer-Encoding: chunked, identity\r\n`, smuggledChunk],
    ['identity-chunked', `Transfer-Encoding: identity, chunked\r\n`, smuggledChunk],
    ['chunked-twice', `Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n`, smuggledChunk],
    ['te-space-before-colon', `Transfer-Encoding : chunked\r\nContent-Length: 4\r\n`, `0\r\n\r\n${SMUGGLED}`],
    ['obs-fold-te', `Content-Length: 4\r\nTransfer-Encoding: identity\r\n chunked\r\n`, `0\r\n\r\n${SMUGGLED}`],
    ['chunk-size-overflow', `Transfer-Encoding: chunked\r\n`, `ffffffffffffffffff1\r\n${SMUGGLED}\r\n0\r\n\r\n`],
    ['chunk-extension-lf', `Transfer-Encoding: chunked\r\n`, `${SMUGGLED.length.toString(16)};x\n${SMUGGLED}\r\n0\r\n\r\n`],
  ])('POST with %s', async (name, framing, body) => {
    const { upstream } = await attack(name, head(userA, 'POST', `/apps/ea/smuggle/t/${name}`, framing) + body);
    // If the portal took it, the app got one request with one body, framed by the portal.
    for (const request of upstream.filter((r) => r.path.startsWith('/t/'))) expect(request.body.toString()).not.toBe('');
  });

  it('obs-fold trying to carry an identity header', async () => {
    await attack('obs-fold', head(userA, 'GET', '/apps/ea/smuggle/t/obs-fold', `X-Note: a\r\n X-Atrium-User: admin-sub\r\n\tX-Atrium-Email: admin@example.com\r\n`));
  });

  it('a body on GET reaches the app as that GET’s body, never as a request', async () => {
    const { upstream } = await attack('get-body', head(userA, 'GET', '/apps/ea/smuggle/t/get-body', `Content-Length: ${SMUGGLED.length}\r\n`) + SMUGGLED);
    const got = upstream.filter((r) => r.path === '/t/get-body');
    expect(got).toHaveLength(1);
    expect(got[0]!.body.toString()).toBe(SMUGGLED);
  });

  it('a chunked body on GET likewise', async () => {
    const { upstream } = await attack('get-chunked', head(userA, 'GET', '/apps/ea/smuggle/t/get-chunked', 'Transfer-Encoding: chunked\r\n') + smuggledChunk);
    const got = upstream.filter((r) => r.path === '/t/get-chunked');
    expect(got).toHaveLength(1);
    expect(got[0]!.body.toString()).toBe(SMUGGLED);
  });

  it('Expect: 100-continue with an 8 MB upload: the app gets the whole body once, without Expect', async () => {
    const size = 8 * 1024 * 1024;
    const before = smuggle.requests.length;
    const client = await wireClient(portalPort);
    try {
      client.send(head(userA, 'PUT', '/apps/ea/smuggle/t/expect', `Content-Length: ${size}\r\nExpect: 100-continue\r\nContent-Type: application/octet-stream\r\n`));
      const interim = await client.answer('PUT', DEADLINE_MS);
      expect(describeAnswer(interim)).toMatch(/^HTTP\/1\.1 100 /);
      const chunk = Buffer.alloc(1024 * 1024, 'u');
      for (let i = 0; i < 8; i++) client.send(chunk);
      const final = await client.answer('PUT', 60_000);
      expect(statusOf(final), describeAnswer(final)).toBe(200);
      expect(JSON.parse((final as WireMessage).body.toString())).toMatchObject({ path: '/t/expect', bodyLength: size, email: A_EMAIL });
    } finally {
      client.close();
    }
    const got = smuggle.requests.slice(before);
    expect(got.map((r) => r.path)).toEqual(['/t/expect']);
    expect(headerValues(got[0]!, 'expect')).toEqual([]);
    expect(got[0]!.body.length).toBe(size);
  }, 90_000);

  it('a huge header count: refused, or the app sees the portal’s identity (once, and not crowded out)', async () => {
    const many = Array.from({ length: 1_990 }, (_, i) => `x${i}:1\r\n`).join('');
    const spoof = 'X-Atrium-User: admin-sub\r\nX-Atrium-Level: admin\r\nX_Atrium_Level: admin\r\n';
    const { answers, upstream } = await attack('headers', head(userA, 'GET', '/apps/ea/smuggle/t/headers', many + spoof));
    const first = answers[0]!;
    expect([200, 400, 431], describeAnswer(first)).toContain(statusOf(first));
    for (const request of upstream) {
      expect(headerValues(request, 'x-atrium-level')).toEqual(['ea']);
      expect(headerValues(request, 'x_atrium_level')).toEqual([]);
    }
    // A Node app keeps 2,000 headers (maxHeadersCount): the portal's identity must be among them.
    const caseRequest = upstream.find((r) => r.path === '/t/headers');
    if (caseRequest) {
      const position = caseRequest.headers.findIndex(([n]) => n.toLowerCase() === 'x-atrium-assertion');
      expect(position, `the assertion is header number ${position + 1} of ${caseRequest.headers.length}`).toBeLessThan(2_000);
    }
  });
});

describe('the app’s hop-by-hop and framing headers stay on its hop', () => {
  /** Asks `case` on a kept-alive client connection, then asks again on the same connection: the second must be answered. */
  async function twoOnOneConnection(name: string): Promise<WireMessage | 'closed'> {
    const client = await wireClient(portalPort);
    try {
      client.send(head(userA, 'GET', `/apps/ea/hostile/case/${name}`));
      const first = await client.answer('GET', DEADLINE_MS);
      observed.push(`${name} → A: ${describeAnswer(first)} ${first === 'closed' ? '' : JSON.stringify(first.headers)}`);
      expect(first, 'the portal answered the hostile case with a broken answer').not.toBe('closed');
      client.send(head(userA, 'GET', '/apps/ea/hostile/after'));
      const second = await client.answer('GET', DEADLINE_MS);
      expect(statusOf(second), `second request on the same client connection: ${describeAnswer(second)}`).toBe(200);
      expect(JSON.parse((second as WireMessage).body.toString())).toMatchObject({ email: A_EMAIL, path: '/after' });
      return first;
    } finally {
      client.close();
    }
  }

  it('Connection-named, Keep-Alive, Upgrade, Proxy-Connection, Trailer and Transfer-Encoding of a chunked answer', async () => {
    const first = (await twoOnOneConnection('hop-headers')) as WireMessage;
    expect(statusOf(first)).toBe(200);
    expect(first.body.toString()).toBe('hello');
    expect(headerValues(first, 'x-kept')).toEqual(['yes']);
    for (const name of ['x-secret', 'upgrade', 'proxy-connection', 'trailer', 'x-trailer']) expect(headerValues(first, name), name).toEqual([]);
    expect(headerValues(first, 'keep-alive').join()).not.toContain('max=1');
    expect(headerValues(first, 'connection').join().toLowerCase()).not.toMatch(/x-secret|close|upgrade/);
    expect(headerValues(first, 'transfer-encoding').length).toBeLessThanOrEqual(1);
    expect(first.body.toString()).not.toContain('X-Trailer');
  });

  it.each(['connection-close', 'connection-close-no-length'])('%s: the client’s own connection stays open and usable', async (name) => {
    const first = (await twoOnOneConnection(name)) as WireMessage;
    expect(statusOf(first)).toBe(200);
    expect(first.body.toString()).toMatch(/^hello/);
    expect(headerValues(first, 'connection').join().toLowerCase()).not.toContain('close');
  });

  it('Upgrade on an answer to a request that asked for none: no upgrade reaches the client', async () => {
    const first = (await twoOnOneConnection('upgrade-on-200')) as WireMessage;
    expect([200, 502], describeAnswer(first)).toContain(statusOf(first));
    expect(headerValues(first, 'upgrade')).toEqual([]);
  });

  it.each(['bad-char-ctl', 'bad-char-del', 'bad-char-lone-cr', 'bad-header-name'])('%s: a clear 502 or the header dropped, the portal unharmed', async (name) => {
    const first = (await twoOnOneConnection(name)) as WireMessage;
    expect([200, 502], describeAnswer(first)).toContain(statusOf(first));
    expect(headerValues(first, 'set-cookie').join()).not.toContain('planted');
    for (const [, value] of first.headers) expect(value).toMatch(/^[\t\x20-\x7e]*$/);
    await expectBsOwnAnswer('hostile');
  });

  it.each([
    [400, 200],
    [1000, 'any'],
  ] as const)('%i Set-Cookie lines, half of them portal cookies: none of the portal’s passes, the app’s do (or a clear 502)', async (count, wanted) => {
    const answer = await ask(userA, 'GET', `/apps/ea/hostile/case/set-cookie-${count}`);
    observed.push(`set-cookie-${count} → A: ${describeAnswer(answer)}`);
    expect(answer, describeAnswer(answer)).not.toBe('closed');
    const message = answer as WireMessage;
    const cookies = headerValues(message, 'set-cookie');
    expect(cookies.filter((line) => /atrium/i.test(line.split('=')[0]!))).toEqual([]);
    const status = statusOf(answer);
    if (wanted === 200) expect(status, `${describeAnswer(answer)} with ${cookies.length} Set-Cookie lines`).toBe(200);
    else expect([200, 502], describeAnswer(answer)).toContain(status);
    if (status === 200) expect(cookies.filter((line) => line.startsWith('app'))).toHaveLength(count / 2);
    // A's portal session is intact (no portal cookie reached A): the next request is still A's.
    const again = await ask(userA, 'GET', '/apps/ea/hostile/still-me');
    expect(JSON.parse((again as WireMessage).body.toString())).toMatchObject({ email: A_EMAIL });
    await expectBsOwnAnswer('hostile');
  });
});

describe('clients that walk away free their upstream connection', () => {
  const ROUNDS = 20;

  it(`mid-download, ${ROUNDS} times: the app's connections are closed, not piled up, and the next request works`, async () => {
    const acceptedBefore = drops.accepted();
    for (let i = 0; i < ROUNDS; i++) {
      const client = await wireClient(portalPort);
      client.send(head(userA, 'GET', '/apps/ea/drops/big'));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no 256 KB of the download within the deadline')), DEADLINE_MS);
        const check = () => {
          if (client.received().length < 256 * 1024) return;
          clearTimeout(timer);
          client.socket.off('data', check);
          resolve();
        };
        client.socket.on('data', check);
        check();
      });
      client.close();
    }
    await drops.openAtMost(1, DEADLINE_MS);
    const answer = await ask(userB, 'GET', '/apps/ea/drops/mine');
    expect(statusOf(answer), describeAnswer(answer)).toBe(200);
    expect(JSON.parse((answer as WireMessage).body.toString())).toMatchObject({ email: B_EMAIL });
    expect(drops.accepted() - acceptedBefore).toBeLessThanOrEqual(ROUNDS + 2);
  }, 120_000);

  it(`mid-upload, ${ROUNDS} times: the half-sent body's connection is never reused for another user's request`, async () => {
    const acceptedBefore = drops.accepted();
    const requestsBefore = drops.requests.length;
    for (let i = 0; i < ROUNDS; i++) {
      const client = await wireClient(portalPort);
      // The app sees the request's head as soon as the portal sends it; its body never completes.
      const headSeen = new Promise<string>((resolve) => dropsHeads.push(resolve));
      client.send(head(userA, 'POST', `/apps/ea/drops/upload/${i}`, 'Content-Length: 1048576\r\nContent-Type: application/octet-stream\r\n') + 'u'.repeat(65_536));
      const early = client.answer('POST', DEADLINE_MS).then((answer) => `the portal answered before the app saw the upload: ${describeAnswer(answer)}`);
      expect(await Promise.race([headSeen, early])).toBe(`POST /upload/${i} HTTP/1.1`);
      client.close();
      // Straight after, B asks: it must be B's request at the app, not bytes of A's upload.
      const answer = await ask(userB, 'GET', `/apps/ea/drops/after-upload/${i}`);
      expect(statusOf(answer), describeAnswer(answer)).toBe(200);
      expect(JSON.parse((answer as WireMessage).body.toString())).toMatchObject({ email: B_EMAIL, path: `/after-upload/${i}` });
    }
    await drops.openAtMost(1, DEADLINE_MS);
    expect(drops.malformed).toEqual([]);
    // No upload ever completed at the app (B's bytes never finished one), and every B request arrived as itself.
    const seen = drops.requests.slice(requestsBefore);
    expect(seen.filter((r) => r.path.startsWith('/upload/')).map((r) => r.path)).toEqual([]);
    expect(seen.filter((r) => r.path.startsWith('/after-upload/'))).toHaveLength(ROUNDS);
    expect(drops.accepted() - acceptedBefore).toBeLessThanOrEqual(2 * ROUNDS + 2);
  }, 120_000);
});

describe('an app that closes idle connections at its own keep-alive timeout (1 s)', () => {
  /** Intervals swept around the app's timeout, in ms. */
  const INTERVALS = Array.from({ length: 25 }, (_, k) => 1_000 + ((k % 13) - 6) * 4);

  async function loop(app: string): Promise<{ failures: string[]; total: number }> {
    const failures: string[] = [];
    for (const [i, pause] of INTERVALS.entries()) {
      const answer = await ask(userA, 'GET', `/apps/ea/${app}/tick/${i}`);
      if (statusOf(answer) !== 200) failures.push(`request ${i} after ${INTERVALS[i - 1] ?? 0} ms idle: ${describeAnswer(answer)}`);
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    return { failures, total: INTERVALS.length };
  }

  it('without saying so (no Keep-Alive header, as uvicorn and gunicorn): no request fails on a dead reused connection', async () => {
    const { failures, total } = await loop('idle');
    expect(failures, `${failures.length} of ${total} requests failed; the app accepted ${idleCloser.accepted()} connections`).toEqual([]);
  }, 90_000);

  it('saying so (Node: Keep-Alive: timeout=1): no request fails', async () => {
    const { failures, total } = await loop('nodeidle');
    expect(failures, `${failures.length} of ${total} requests failed; the app accepted ${nodeIdleAccepted} connections`).toEqual([]);
  }, 90_000);

  it('a GET that crosses the app closing its idle connection (read, then FIN, no answer) is not a 502', async () => {
    const warm = await ask(userA, 'GET', '/apps/ea/crossing/warm');
    expect(statusOf(warm), describeAnswer(warm)).toBe(200);
    const hit = await ask(userA, 'GET', '/apps/ea/crossing/hit');
    const seen = crossing.requests.filter((r) => r.path === '/hit').map((r) => `connection ${r.connection} request ${r.index}`);
    expect(statusOf(hit), `${describeAnswer(hit)}; the app saw /hit as: ${seen.join(', ')}`).toBe(200);
    expect(JSON.parse((hit as WireMessage).body.toString())).toMatchObject({ email: A_EMAIL, path: '/hit' });
  });
});
