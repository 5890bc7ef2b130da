// Messages between the processes of a parallel group (--nodes): each is a 4-byte big-endian length and then the
// value in V8's serialization (what postMessage uses between threads), so runtime calls and their typed arrays cross a
// TCP connection as they cross to a worker thread.
import type { Socket } from 'node:net';
import { deserialize, serialize } from 'node:v8';
import type { RankCall } from '../ranks.js';

/** The settings every process of a group must agree on, sent with a joining process's hello. */
export interface Agreement {
  nodes: number;
  tensor: number;
  stages: number;
  /** the model's identity: its config.json's SHA-256, or a GGUF file's size (nodes may keep it at other paths) */
  model: string;
  /** the load options that shape the model and its runtime (JSON, keys sorted) */
  options: string;
}

export type Message =
  /** a process asks to join: its node rank and its settings */
  | { t: 'hello'; node: number; agreement: Agreement }
  /** the leader's answer: refused (and why), or let in */
  | { t: 'welcome' } | { t: 'refused'; why: string }
  /** a process's ranks have loaded */
  | { t: 'ready'; node: number }
  /** a runtime call of rank 0's scheduler, for every rank to run */
  | { t: 'call'; call: RankCall }
  /** rows from rank `from` to rank `to` (the leader passes on those for another process) */
  | { t: 'rows'; from: number; to: number; data: Float32Array }
  /** rank `rank` stopped, for `why`: every rank's job ends */
  | { t: 'abort'; rank: number; why: string }
  /** the leader's model was disposed: the others dispose theirs and end */
  | { t: 'bye' };

/** Larger than any message this protocol sends (a request's floats are capped by the group's capacity). */
const MAX_BYTES = 1 << 30;

export function writeMessage(socket: Socket, m: Message): void {
  const body = serialize(m), head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  socket.write(Buffer.concat([head, body]));
}

/** Calls `on` with each message that arrives on `socket`, in order; `bad` with why when the bytes are not messages. */
export function readMessages(socket: Socket, on: (m: Message) => void, bad: (why: string) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const n = pending.readUInt32BE(0);
      if (n > MAX_BYTES) {
        bad(`a message of ${n} bytes: the other end does not speak Peregrine's protocol`);
        socket.destroy();
        return;
      }
      if (pending.length < 4 + n) break;
      let m: Message;
      try {
        m = deserialize(pending.subarray(4, 4 + n)) as Message;
      } catch (err) {
        bad(`a message that does not decode (${(err as Error).message})`);
        socket.destroy();
        return;
      }
      pending = pending.subarray(4 + n);
      on(m);
    }
  });
}
