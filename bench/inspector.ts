/**
 * Memory of a process started with `--inspect=127.0.0.1:<port>`, after a full garbage collection
 * (through the inspector protocol: HeapProfiler.collectGarbage, then Runtime.evaluate of
 * process.memoryUsage()). RSS right after start-up moves by tens of MB with when the collector last
 * ran; the heap after a full collection is what the loaded code and data actually hold.
 */
import WebSocket from 'ws';

export interface MemoryAfterGc {
  rssMB: number;
  heapUsedMB: number;
}

export async function memoryAfterGc(inspectPort: number): Promise<MemoryAfterGc> {
  const list = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl?: string }[];
  const url = list[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target on port ${inspectPort}`);
  const socket = new WebSocket(url, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  let nextId = 1;
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => reject(new Error(`inspector: ${method} got no answer`)), 30_000);
      const onMessage = (data: WebSocket.RawData) => {
        const message = JSON.parse(String(data)) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
        if (message.id !== id) return;
        socket.off('message', onMessage);
        clearTimeout(timer);
        if (message.error) reject(new Error(`inspector: ${method}: ${message.error.message}`));
        else resolve(message.result ?? {});
      };
      socket.on('message', onMessage);
      socket.send(JSON.stringify({ id, method, params }));
    });
  try {
    // Twice: the first pass leaves what only weak references and finalizers held.
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const evaluated = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const value = (evaluated.result as { value?: string } | undefined)?.value;
    if (!value) throw new Error('inspector: process.memoryUsage() gave nothing');
    const usage = JSON.parse(value) as { rss: number; heapUsed: number };
    return { rssMB: round(usage.rss / 2 ** 20), heapUsedMB: round(usage.heapUsed / 2 ** 20) };
  } finally {
    socket.close();
  }
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
