// The bridge thread of a process of a parallel group that spans processes (--nodes; net/nodes.ts): it holds the TCP
// connections, so that the ranks (which block in their passes) need none. The leader (node 0) listens on
// --master-addr:--master-port and lets in one connection per other node, once its hello agrees with the leader's
// settings; every other node connects to it. Rows between ranks of two followers pass through the leader.
//
// For this process's ranks it serves the two requests of src/backends/cpu/net-group.ts, each announced on a
// BroadcastChannel: a SEND is copied out and sent (or kept, for a rank of this process), and a RECV is answered with
// the next rows from that rank, at once or when they arrive. It passes runtime calls from the leader's rank 0 to the followers' ranks (through their main threads),
// and the stop of any rank to every process: a rank that fails, or a connection that closes before the leader said
// bye, stops the group with the reason, which every waiting rank then reports.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { BroadcastChannel, parentPort, workerData } from 'node:worker_threads';
import {
  abortNet, DONE, LENGTH, netHeader, netLayout, netStopped, OP, PEER, REQUEST, requestBase, SEND, type NetHandle,
} from '../../backends/cpu/net-group.js';
import { readMessages, writeMessage, type Agreement, type Message } from './wire.js';

export interface BridgeStart {
  handle: NetHandle;
  node: number;
  nodes: number;
  host: string;
  port: number;
  agreement: Agreement;
  /** ms the leader waits for every node to connect, and a follower for the leader to answer */
  joinTimeoutMs: number;
}

/** What a bridge tells its process's main thread. */
export type BridgeNews =
  | { joined: number } | { ready: number } | { welcome: true } | { call: Message & { t: 'call' } } | { bye: true }
  | { stopped: { rank: number; why: string } } | { fatal: string };

/** What a process's main thread tells its bridge. */
export type BridgeOrder = { call: Message & { t: 'call' } } | { ready: true } | { bye: true };

const start = workerData as BridgeStart;
const { handle, node, nodes } = start;
const port = parentPort!;
const h = netHeader(handle);
const local = handle.local;
const bufs = Array.from({ length: local }, (_, i) => new Float32Array(handle.buffer, netLayout(handle).buffers + 4 * i * handle.capacity, handle.capacity));
const tell = (news: BridgeNews) => port.postMessage(news);
const nodeOf = (rank: number) => Math.floor(rank / local);
const ranksOf = (n: number) => `ranks ${n * local} to ${(n + 1) * local - 1}`;

/** The other processes' connections by node (a follower has only the leader's, as node 0). */
const peers = new Map<number, Socket>();
/** set once the group ends (the leader's bye, a refusal, a stop begun here): connections that close after it end nothing */
let ending = false;
/** set when the group's stop came from another process, so that it is not sent back */
let fromAfar = false;

// ---- rows between ranks
/** rows that arrived before their rank asked for them, by from * size + to, oldest first */
const waiting = new Map<number, Float32Array[]>();
/** per local rank: the RECV it waits on (from which rank, under which request number) */
const asking: ({ from: number; seq: number } | null)[] = new Array(local).fill(null);

function answer(i: number, data: Float32Array, seq: number): void {
  const b = requestBase(i);
  bufs[i].set(data);
  h[b + LENGTH] = data.length;
  Atomics.store(h, b + DONE, seq);
  Atomics.notify(h, b + DONE);
}

function deliver(from: number, to: number, data: Float32Array): void {
  const i = to - handle.first, want = asking[i];
  if (want && want.from === from) {
    asking[i] = null;
    answer(i, data, want.seq);
    return;
  }
  const key = from * handle.size + to;
  const q = waiting.get(key);
  if (q) q.push(data);
  else waiting.set(key, [data]);
}

function route(from: number, to: number, data: Float32Array): void {
  const n = nodeOf(to);
  if (n === node) return deliver(from, to, data);
  const socket = peers.get(node === 0 ? n : 0);
  if (socket) writeMessage(socket, { t: 'rows', from, to, data });
}

/** the request number of each local rank served last */
const served = new Array<number>(local).fill(0);

/** Serves local rank i's request, if it has one this bridge has not served. */
function serve(i: number): void {
  const b = requestBase(i), rank = handle.first + i, seq = Atomics.load(h, b + REQUEST);
  if (seq === served[i]) return;
  served[i] = seq;
  const peer = h[b + PEER], len = h[b + LENGTH];
  if (h[b + OP] === SEND) {
    route(rank, peer, bufs[i].slice(0, len));
    Atomics.store(h, b + DONE, seq);
    Atomics.notify(h, b + DONE);
    return;
  }
  const q = waiting.get(peer * handle.size + rank);
  if (q?.length) answer(i, q.shift()!, seq);
  else asking[i] = { from: peer, seq };
}

// ---- stops
/** Stops the group for a reason that came from another process (unless a rank of this one stopped it first). */
function stop(rank: number, why: string): void {
  fromAfar = true;
  if (!abortNet(handle, rank, why)) fromAfar = false;
  void onStop();
}

/** Once the group stops: tell this process's main thread, and the other processes when the stop began here. */
let stopSeen = false;
async function onStop(): Promise<void> {
  if (stopSeen) return;
  stopSeen = true;
  const stopped = netStopped(handle)!;
  if (!fromAfar) {
    // the stop began here: every other process hears of it before this one's main thread ends this bridge
    ending = true;
    await Promise.all([...peers.values()].map((s) => new Promise<void>((resolve) => {
      writeMessage(s, { t: 'abort', ...stopped });
      s.end(resolve);
      setTimeout(resolve, 1000).unref();
    })));
  }
  tell({ stopped });
}

function lost(n: number): void {
  if (ending || netStopped(handle)) return;
  const who = n === 0 ? 'the leader (node 0)' : `node ${n} (${ranksOf(n)})`;
  const why = `${who} closed its connection: its process ended or the network failed`;
  stop(n * local, why);
  // the leader tells the other followers
  if (node === 0) for (const s of peers.values()) writeMessage(s, { t: 'abort', rank: n * local, why });
}

/** A message from node `n`'s connection. */
function received(n: number, m: Message, socket: Socket): void {
  switch (m.t) {
    case 'rows':
      return route(m.from, m.to, m.data);
    case 'abort':
      if (node === 0) for (const [k, s] of peers) if (k !== n) writeMessage(s, m);
      return stop(m.rank, m.why);
    case 'ready':
      return tell({ ready: m.node });
    case 'call':
      return tell({ call: m });
    case 'welcome':
      return tell({ welcome: true });
    case 'refused':
      ending = true;
      socket.destroy();
      return tell({ fatal: `the leader at ${start.host}:${start.port} refused node ${node}: ${m.why}` });
    case 'bye':
      ending = true;
      return tell({ bye: true });
    default:
      tell({ fatal: `node ${n} sent a message this node does not expect (${(m as { t: string }).t})` });
  }
}

// ---- the leader
/** ms the leader's bridge relays rows after its bye for followers that have not closed their connections (NetGroup's wait) */
const BYE_WAIT_MS = 60_000;

function differences(a: Agreement, b: Agreement): string {
  const out: string[] = [];
  for (const k of ['nodes', 'tensor', 'stages', 'model'] as const) if (a[k] !== b[k]) out.push(`${k} ${b[k]} where the leader has ${a[k]}`);
  if (a.options !== b.options) out.push(`load options ${b.options} where the leader has ${a.options}`);
  return out.join('; ');
}

function lead(): void {
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    let n = -1;
    readMessages(socket, (m) => {
      if (n >= 0) return received(n, m, socket);
      // a connection that is not a node's is closed; a node that cannot join ends the job, which cannot run without it
      if (m.t !== 'hello') return void socket.destroy();
      const refuse = (why: string) => {
        writeMessage(socket, { t: 'refused', why });
        socket.end();
        tell({ fatal: `a node that asked to join was refused: ${why}` });
      };
      if (!(Number.isSafeInteger(m.node) && m.node >= 1 && m.node < nodes)) return refuse(`node rank ${m.node} is not one of 1 to ${nodes - 1}`);
      if (peers.has(m.node)) return refuse(`node rank ${m.node} has joined already`);
      const diff = differences(start.agreement, m.agreement);
      if (diff) return refuse(`node ${m.node}'s settings differ: ${diff}`);
      n = m.node;
      peers.set(n, socket);
      writeMessage(socket, { t: 'welcome' });
      tell({ joined: n });
      if (peers.size === nodes - 1) clearTimeout(timer);
    }, (why) => {
      if (n >= 0) tell({ fatal: `node ${n}'s connection: ${why}` });
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (n >= 0) lost(n);
    });
  });
  server.on('error', (err) => tell({ fatal: `the leader cannot listen on ${start.host}:${start.port} (--master-addr, --master-port): ${err.message}` }));
  server.listen(start.port, start.host);
  const timer = setTimeout(() => {
    const missing = Array.from({ length: nodes - 1 }, (_, k) => k + 1).filter((k) => !peers.has(k));
    tell({ fatal: `node ${missing.join(', ')} did not join within ${start.joinTimeoutMs / 1000} s (the leader listens on ${start.host}:${start.port})` });
  }, start.joinTimeoutMs);
  port.on('message', (o: BridgeOrder) => {
    if ('call' in o) for (const s of peers.values()) writeMessage(s, o.call);
    if ('bye' in o) {
      ending = true;
      // the connections stay open until each follower closes its own, once its ranks have run every call: a follower
      // may still be in the last pass, and its rows from or to another follower pass through here
      for (const s of peers.values()) writeMessage(s, { t: 'bye' });
      clearTimeout(timer);
      // this thread ends once every follower has closed its connection, or after as long as a rank waits for rows
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), BYE_WAIT_MS);
    }
  });
}

// ---- a follower
function follow(): void {
  const deadline = Date.now() + start.joinTimeoutMs;
  const attempt = () => {
    const socket = connect(start.port, start.host);
    let joined = false;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      joined = true;
      peers.set(0, socket);
      writeMessage(socket, { t: 'hello', node, agreement: start.agreement });
    });
    readMessages(socket, (m) => received(0, m, socket), (why) => tell({ fatal: `the leader's connection: ${why}` }));
    socket.on('error', (err) => {
      if (joined) return;
      if (Date.now() + 250 > deadline) tell({ fatal: `node ${node} could not reach the leader at ${start.host}:${start.port} within ${start.joinTimeoutMs / 1000} s (${err.message})` });
      else setTimeout(attempt, 250);
    });
    socket.on('close', () => {
      if (joined) lost(0);
    });
  };
  attempt();
  port.on('message', (o: BridgeOrder) => {
    const leader = peers.get(0);
    if ('ready' in o && leader) writeMessage(leader, { t: 'ready', node });
  });
}

// the ranks' requests, and stops (-1), as this process's threads announce them
const channel = new BroadcastChannel(handle.id);
channel.onmessage = (e: unknown) => {
  const i = (e as { data: number }).data;
  if (i >= 0) serve(i);
  else void onStop();
};
if (node === 0) lead();
else follow();
