// The host side of the paged KV cache: which blocks are free, how many sequences (and sessions) hold each
// block, and the prefix cache. A full block is named by a hash of every token from the start of the
// sequence to its end, so two sequences whose first 16k tokens agree can share their first k blocks.
// Blocks that nobody holds but whose contents are named stay cached (least recently freed evicted first)
// until the pool needs them. Block 0 is never handed out: padding rows of a decode step write there.

/** A chain hash of a block's tokens after its predecessor's hash (FNV-1a over 32-bit words, two lanes). */
export function blockHash(parent: string, tokens: ArrayLike<number>, from: number, count: number): string {
  let a = 0x811c9dc5, b = 0x01000193 ^ parent.length;
  for (let i = 0; i < parent.length; i++) {
    a = Math.imul(a ^ parent.charCodeAt(i), 0x01000193) >>> 0;
    b = Math.imul(b ^ parent.charCodeAt(i), 0x5bd1e995) >>> 0;
  }
  for (let i = from; i < from + count; i++) {
    const t = tokens[i] >>> 0;
    a = Math.imul(a ^ t, 0x01000193) >>> 0;
    b = Math.imul(b ^ (t + 0x9e3779b9), 0x5bd1e995) >>> 0;
    b ^= b >>> 15;
  }
  return `${a.toString(36)}.${b.toString(36)}.${count}`;
}

export class BlockPool {
  private readonly refs: Int32Array;
  private readonly free: number[] = [];
  /** hash -> block, for full blocks whose contents are known */
  private readonly named = new Map<string, number>();
  private readonly nameOf = new Map<number, string>();
  /** named blocks nobody holds, oldest first (a Map keeps insertion order) */
  private readonly idle = new Map<number, true>();

  constructor(readonly blocks: number, readonly blockSize: number) {
    this.refs = new Int32Array(blocks);
    for (let b = blocks - 1; b >= 1; b--) this.free.push(b);
  }

  /** Blocks that can be handed out now (free, or cached and idle). */
  available(): number {
    return this.free.length + this.idle.size;
  }

  /** Blocks held by sequences or sessions. */
  used(): number {
    return this.blocks - 1 - this.available();
  }

  cached(): number {
    return this.named.size;
  }

  /** A block for new contents, or null when the pool is exhausted. */
  allocate(): number | null {
    let b = this.free.pop();
    if (b === undefined) {
      const oldest = this.idle.keys().next();
      if (oldest.done) return null;
      b = oldest.value;
      this.idle.delete(b);
      this.unname(b);
    }
    this.refs[b] = 1;
    return b;
  }

  retain(b: number): void {
    if (this.refs[b] === 0) this.idle.delete(b);
    this.refs[b]++;
  }

  release(b: number): void {
    if (this.refs[b] <= 0) throw new Error(`internal: block ${b} released more often than held`);
    if (--this.refs[b] > 0) return;
    if (this.nameOf.has(b)) this.idle.set(b, true);
    else this.free.push(b);
  }

  refCount(b: number): number {
    return this.refs[b];
  }

  /** The cached block holding exactly these contents, retained for the caller, or null. */
  lookup(hash: string): number | null {
    const b = this.named.get(hash);
    if (b === undefined) return null;
    this.retain(b);
    return b;
  }

  /** Marks a full block's contents as `hash` so later sequences can share it. */
  name(b: number, hash: string): void {
    if (this.nameOf.has(b) || this.named.has(hash)) return;
    this.named.set(hash, b);
    this.nameOf.set(b, hash);
  }

  /** Forgets a block's name (its contents are about to change). */
  unname(b: number): void {
    const h = this.nameOf.get(b);
    if (h === undefined) return;
    this.nameOf.delete(b);
    this.named.delete(h);
  }
}
