/**
 * The load generator for socket.io and plain websockets, in a process of its own (the benchmark
 * pins it to the load core): N clients, each sending one message and waiting for its answer before
 * sending the next (as wrk's connections do), for a number of seconds.
 *
 *   sio  socket.io over the websocket transport, `emit('echo', payload, ack)`; the ack must carry
 *        the payload back (socket.io's protocol spoken directly on `ws`: see sioClient)
 *   ws   a `ws` client; the server must echo the message
 *
 * argv[2]: JSON { kind, url, namespace?, headers, clients, seconds, payload }.
 * Protocol on stdio: prints `ready <ms to connect every client>`, waits for a line on stdin, runs,
 * prints `result <json>` and exits. Any failure to connect prints `error <message>` and exits 1.
 */
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

interface Options {
  kind: 'sio' | 'ws';
  url: string;
  namespace?: string;
  headers: Record<string, string>;
  clients: number;
  seconds: number;
  payload: string;
}

const options = JSON.parse(process.argv[2] ?? '{}') as Options;
const ACK_TIMEOUT_MS = 10_000;

let running = false;
let ops = 0;
let bad = 0;
let errors = 0;
let firstProblem: string | undefined;
let latencies = new Float64Array(1 << 16);
let recorded = 0;

function problem(kind: 'bad' | 'error', what: string): void {
  if (kind === 'bad') bad++;
  else errors++;
  firstProblem ??= what;
}

function record(ms: number): void {
  if (recorded === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[recorded++] = ms;
}

/** One client: `start()` begins its loop, which ends when `running` goes false; `done` then resolves. */
interface LoadClient {
  start(): void;
  done: Promise<void>;
  close(): void;
}

/**
 * A socket.io client speaking the wire protocol itself (engine.io 4 over a websocket, socket.io 5
 * packets) on `ws`: socket.io-client costs the generator about a fifth more CPU per ack, and the
 * generator's core must not be what sets the pace. The exchange is the one socket.io-client's
 * `emit('echo', payload, ack)` makes (the by-hand check in bench/targets.ts uses socket.io-client):
 *
 *   server  0{"sid":…,"pingInterval":…}        engine.io open
 *   client  40/apps/stable/rt,                 connect to the namespace
 *   server  40/apps/stable/rt,{"sid":…}        admitted (44…{"message":…} when refused)
 *   client  42/apps/stable/rt,17["echo","hello"]
 *   server  43/apps/stable/rt,17["hello"]       the ack, checked byte for byte
 *   server  2 / client 3                       engine.io ping / pong
 */
function sioClient(): Promise<LoadClient> {
  const nsp = options.namespace ?? '/';
  const prefix = nsp === '/' ? '' : `${nsp},`;
  const socket = new WebSocket(`${options.url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`, { headers: options.headers, perMessageDeflate: false });
  const body = JSON.stringify(['echo', options.payload]);
  const reply = JSON.stringify([options.payload]);
  return new Promise((resolve, reject) => {
    let admitted = false;
    const timer = setTimeout(() => reject(new Error(`socket.io: not admitted to ${nsp} within ${ACK_TIMEOUT_MS} ms`)), ACK_TIMEOUT_MS);
    let finish: () => void = () => {};
    const done = new Promise<void>((r) => (finish = r));
    let id = 0;
    let sent = 0;
    let expected = '';
    const watchdog = acksWatchdog(() => finish());
    const send = () => {
      id++;
      expected = `43${prefix}${id}${reply}`;
      sent = performance.now();
      watchdog.sent();
      socket.send(`42${prefix}${id}${body}`);
    };
    socket.once('unexpected-response', (_req, res) => reject(new Error(`socket.io handshake answered ${res.statusCode}`)));
    socket.on('error', (err) => (admitted ? problem('error', err.message) : reject(err)));
    socket.on('close', (code) => {
      watchdog.stop();
      if (!admitted) {
        clearTimeout(timer);
        reject(new Error(`socket.io: closed (${code}) before the namespace admitted the client`));
      }
      if (running) problem('error', `closed during the run (${code})`);
      finish();
    });
    socket.on('message', (data) => {
      const text = String(data);
      if (text === '2') return socket.send('3');
      if (!admitted) {
        if (text.startsWith('0')) return socket.send(`40${prefix}`);
        clearTimeout(timer);
        if (text.startsWith(`40${prefix}`)) {
          admitted = true;
          resolve({ start: send, done, close: () => socket.terminate() });
        } else reject(new Error(`socket.io refused the namespace ${nsp}: ${text.slice(0, 200)}`));
        return;
      }
      watchdog.answered();
      if (text === expected) {
        ops++;
        record(performance.now() - sent);
      } else problem('bad', `ack carried ${text.slice(0, 100)}`);
      if (running) send();
      else {
        watchdog.stop();
        finish();
      }
    });
  });
}

function wsClient(): Promise<LoadClient> {
  const socket = new WebSocket(options.url, { headers: options.headers, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    let open = false;
    socket.once('unexpected-response', (_req, res) => reject(new Error(`websocket handshake answered ${res.statusCode}`)));
    socket.on('error', (err) => (open ? problem('error', err.message) : reject(err)));
    socket.once('open', () => {
      open = true;
      let finish: () => void = () => {};
      const done = new Promise<void>((r) => (finish = r));
      let sent = 0;
      const watchdog = acksWatchdog(() => finish());
      const send = () => {
        sent = performance.now();
        watchdog.sent();
        socket.send(options.payload);
      };
      socket.on('close', (code) => {
        watchdog.stop();
        if (running) problem('error', `closed during the run (${code})`);
        finish();
      });
      socket.on('message', (data) => {
        watchdog.answered();
        if (String(data) === options.payload) {
          ops++;
          record(performance.now() - sent);
        } else problem('bad', `echo carried ${JSON.stringify(String(data)).slice(0, 100)}`);
        if (running) send();
        else {
          watchdog.stop();
          finish();
        }
      });
      resolve({ start: send, done, close: () => socket.terminate() });
    });
  });
}

/** One message in flight per client: an answer that does not come within ACK_TIMEOUT_MS is an error (and ends that client's loop). */
function acksWatchdog(giveUp: () => void): { sent(): void; answered(): void; stop(): void } {
  let waiting = false;
  const timer = setInterval(() => {
    if (waiting && performance.now() - since > ACK_TIMEOUT_MS) {
      waiting = false;
      clearInterval(timer);
      problem('error', `no answer within ${ACK_TIMEOUT_MS} ms`);
      giveUp();
    }
  }, 1_000);
  timer.unref();
  let since = 0;
  return {
    sent() {
      waiting = true;
      since = performance.now();
    },
    answered() {
      waiting = false;
    },
    stop() {
      clearInterval(timer);
    },
  };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function main(): Promise<void> {
  const connectStarted = performance.now();
  const make = options.kind === 'sio' ? sioClient : wsClient;
  const clients: LoadClient[] = [];
  // A few at a time: fifty handshakes at once only measure the listen backlog.
  for (let i = 0; i < options.clients; i += 10) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(10, options.clients - i) }, () => make()))));
  }
  console.log(`ready ${Math.round(performance.now() - connectStarted)}`);
  await new Promise<void>((resolve) => createInterface({ input: process.stdin }).once('line', () => resolve()));

  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  running = true;
  for (const c of clients) c.start();
  await new Promise((r) => setTimeout(r, options.seconds * 1000));
  running = false;
  // Every client finishes the message it has in flight (or times out on it).
  await Promise.all(clients.map((c) => c.done));
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const sorted = latencies.slice(0, recorded).sort();
  const result = {
    ops,
    bad,
    errors,
    firstProblem,
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
  };
  console.log(`result ${JSON.stringify(result)}`);
  for (const c of clients) c.close();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.log(`error ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
