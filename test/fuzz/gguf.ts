// Fuzzing the GGUF reader against an independent reading of the format (in BigInt, from the layout as llama.cpp's
// gguf.md documents it, with Peregrine's stated limits): every file is either refused with a PeregrineError or read
// exactly as the reference reading says (metadata, tensors, byte ranges, every byte from inside the file), and a file
// the reference accepts is never refused. Files that read are then opened as models (configuration and vocabulary
// from hostile metadata), loaded on the CPU and asked for two tokens: a model or a one-line refusal, nothing else.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { loadModel } from '../../src/engine/load.js';
import { GgufFile } from '../../src/loaders/gguf.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { assertInside, assertTensorsRead, fail, fsTouched, inCaseDir, noFdLeak, noteOutcome, outcome, syncOutcome, writeFiles, type Target } from './harness.js';
import { applyByteEdits, byteEdits, hostileString, oneIn, where, type ByteEdit } from './mutate.js';

// -------------------------------------------------------------------------------- the format, stated

/** ggml type id -> [name, values per block, bytes per block] for the types Peregrine reads */
const READABLE: Record<number, [string, number, number]> = {
  0: ['F32', 1, 4], 1: ['F16', 1, 2], 30: ['BF16', 1, 2], 8: ['Q8_0', 32, 34], 2: ['Q4_0', 32, 18],
  12: ['Q4_K', 256, 144], 13: ['Q5_K', 256, 176], 14: ['Q6_K', 256, 210],
};
const LIMIT = 2n ** 53n; // counts, lengths and 64-bit values beyond this are refused
const MAX_ITEMS = 2n ** 26n;
const MAX_DEPTH = 4;
/** value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array, 10 u64, 11 i64, 12 f64 */
const WIDTH: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const NUMERIC = new Set([0, 1, 2, 3, 4, 5, 6, 10, 11, 12]);

/** A metadata value as written: its type and what it holds (an array holds typed items). */
export type GValue = { t: number; v: number | bigint | boolean | string } | { t: 9; item: number; items: GValue[] };
export interface GTensor { name: string; ne: bigint[]; type: number; offset: bigint }
export interface GFile { version: number; metadata: { key: string; value: GValue }[]; tensors: GTensor[]; data: Uint8Array }

type Reference =
  | { valid: true; file: GFile; alignment: number; metadata: Map<string, unknown>; tensors: Map<string, { dtype: string; shape: number[]; begin: number; end: number }> }
  | { valid: false; why: string };

class Refused extends Error {}

/** The reference reading. */
export function referenceRead(b: Uint8Array): Reference {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0;
  const no = (why: string): never => { throw new Refused(why); };
  const take = (n: bigint | number): number => {
    if (BigInt(p) + BigInt(n) > BigInt(b.length)) no('truncated');
    const at = p;
    p += Number(n);
    return at;
  };
  const u32 = () => view.getUint32(take(4), true);
  const u64 = () => {
    const v = view.getBigUint64(take(8), true);
    if (v > LIMIT - 1n) no('64-bit value beyond 2^53');
    return v;
  };
  const str = () => {
    const n = u64();
    const at = take(n);
    return new TextDecoder().decode(b.subarray(at, at + Number(n)));
  };
  const value = (t: number, depth: number): [GValue, unknown] => {
    if (t === 8) { const s = str(); return [{ t, v: s }, s]; }
    if (t === 9) {
      if (depth >= MAX_DEPTH) no('arrays nested too deep');
      const item = u32(), n = u64();
      if (n > MAX_ITEMS) no('too many items');
      const items: GValue[] = [], js: unknown[] = [];
      for (let i = 0n; i < n; i++) {
        const [g, j] = value(item, depth + 1);
        items.push(g);
        js.push(j);
      }
      return [{ t: 9, item, items }, js];
    }
    if (!(t in WIDTH)) no(`value type ${t}`);
    const at = take(WIDTH[t]);
    let v: number | bigint | boolean;
    switch (t) {
      case 0: v = view.getUint8(at); break;
      case 1: v = view.getInt8(at); break;
      case 2: v = view.getUint16(at, true); break;
      case 3: v = view.getInt16(at, true); break;
      case 4: v = view.getUint32(at, true); break;
      case 5: v = view.getInt32(at, true); break;
      case 6: v = view.getFloat32(at, true); break;
      case 7: {
        const x = view.getUint8(at);
        if (x > 1) no('bool other than 0 and 1');
        v = x === 1;
        break;
      }
      case 10: v = view.getBigUint64(at, true); if (v > LIMIT - 1n) no('u64 beyond 2^53'); break;
      case 11: v = view.getBigInt64(at, true); if (v > LIMIT - 1n || v < -(LIMIT - 1n)) no('i64 beyond 2^53'); break;
      default: v = view.getFloat64(at, true);
    }
    return [{ t, v: typeof v === 'bigint' ? v : v }, typeof v === 'bigint' ? Number(v) : v];
  };
  try {
    if (u32() !== 0x46554747) no('magic');
    const version = u32();
    if (version !== 2 && version !== 3) no('version');
    const nTensors = u64(), nKv = u64();
    const file: GFile = { version, metadata: [], tensors: [], data: new Uint8Array(0) };
    const metadata = new Map<string, unknown>();
    for (let i = 0n; i < nKv; i++) {
      const key = str();
      if (metadata.has(key)) no('duplicate key');
      const [g, js] = value(u32(), 0);
      file.metadata.push({ key, value: g });
      metadata.set(key, js);
    }
    let alignment = 32;
    const a = file.metadata.find((m) => m.key === 'general.alignment')?.value;
    if (a) {
      const x = a.t === 9 ? NaN : Number(a.t === 7 ? NaN : (a as { v: unknown }).v);
      if (!NUMERIC.has(a.t) || !Number.isInteger(x) || x <= 0 || x > 2 ** 30 || (x & (x - 1)) !== 0) no('alignment');
      alignment = x;
    }
    const names = new Set<string>();
    for (let i = 0n; i < nTensors; i++) {
      const name = str();
      if (names.has(name)) no('duplicate tensor');
      names.add(name);
      const dims = u32();
      if (dims < 1 || dims > 4) no('dims');
      const ne: bigint[] = [];
      for (let d = 0; d < dims; d++) {
        const n = u64();
        if (n < 1n) no('empty dimension');
        ne.push(n);
      }
      const type = u32();
      if (!(type in READABLE)) no(`tensor type ${type}`);
      const offset = u64();
      if (offset % BigInt(alignment) !== 0n) no('unaligned offset');
      if (ne[0] % BigInt(READABLE[type][1]) !== 0n) no('partial block');
      file.tensors.push({ name, ne, type, offset });
    }
    const dataStart = Math.ceil(p / alignment) * alignment;
    file.data = b.subarray(Math.min(dataStart, b.length));
    const tensors = new Map<string, { dtype: string; shape: number[]; begin: number; end: number }>();
    const spans: [bigint, bigint][] = [];
    for (const t of file.tensors) {
      const [dtype, per, bytes] = READABLE[t.type];
      const count = t.ne.reduce((x, y) => x * y, 1n);
      const begin = BigInt(dataStart) + t.offset, end = begin + (count / BigInt(per)) * BigInt(bytes);
      if (end > BigInt(b.length)) no('tensor beyond the file');
      spans.push([begin, end]);
      tensors.set(t.name, { dtype, shape: t.ne.map(Number).reverse(), begin: Number(begin), end: Number(end) });
    }
    spans.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    for (let i = 1; i < spans.length; i++) if (spans[i][0] < spans[i - 1][1]) no('overlap');
    return { valid: true, file, alignment, metadata, tensors };
  } catch (err) {
    if (err instanceof Refused) return { valid: false, why: err.message };
    throw err;
  }
}

// --------------------------------------------------------------------------------------------- writing

class Writer {
  parts: Buffer[] = [];
  length = 0;
  put(b: Buffer): void { this.parts.push(b); this.length += b.length; }
  int(width: number, v: number | bigint | boolean): void {
    const b = Buffer.alloc(width);
    const x = BigInt.asUintN(8 * width, typeof v === 'boolean' ? (v ? 1n : 0n) : typeof v === 'bigint' ? v : BigInt(Math.trunc(Number.isFinite(v) ? v : 0)));
    for (let i = 0; i < width; i++) b[i] = Number((x >> BigInt(8 * i)) & 0xffn);
    this.put(b);
  }
  str(s: string): void { const b = Buffer.from(s, 'utf8'); this.int(8, b.length); this.put(b); }
  value(g: GValue): void {
    if (g.t === 9 && 'items' in g) {
      this.int(4, g.item);
      this.int(8, g.items.length);
      for (const x of g.items) this.value(x);
      return;
    }
    const v = (g as { v: number | bigint | boolean | string }).v;
    if (typeof v === 'string') return this.str(v);
    if (g.t === 6 || g.t === 12) {
      const b = Buffer.alloc(g.t === 6 ? 4 : 8);
      if (g.t === 6) b.writeFloatLE(Number(v)); else b.writeDoubleLE(Number(v));
      return this.put(b);
    }
    this.int(WIDTH[g.t] ?? 4, v);
  }
}

/** Counts written in place of the true ones (a header that lies). */
export interface Lies { version?: number; tensors?: bigint; kv?: bigint; alignPad?: number }

/** The bytes of a file: header, padding to the alignment the metadata asks for (32 when it asks for nonsense), data. */
export function encodeGguf(f: GFile, lies: Lies = {}): Buffer {
  const w = new Writer();
  w.int(4, 0x46554747);
  w.int(4, lies.version ?? f.version);
  w.int(8, lies.tensors ?? BigInt(f.tensors.length));
  w.int(8, lies.kv ?? BigInt(f.metadata.length));
  for (const m of f.metadata) {
    w.str(m.key);
    w.int(4, m.value.t);
    w.value(m.value);
  }
  for (const t of f.tensors) {
    w.str(t.name);
    w.int(4, t.ne.length);
    for (const n of t.ne) w.int(8, n);
    w.int(4, t.type);
    w.int(8, t.offset);
  }
  const a = f.metadata.find((m) => m.key === 'general.alignment')?.value;
  const x = a && 'v' in a ? Number(a.v) : 32;
  const align = Number.isInteger(x) && x > 0 && x <= 4096 ? x : 32;
  w.put(Buffer.alloc((align - (w.length % align)) % align + (lies.alignPad ?? 0)));
  w.put(Buffer.from(f.data));
  return Buffer.concat(w.parts);
}

// --------------------------------------------------------------------------------------------- inputs

const SEEDS = ['llama-tiny-q4_0.gguf', 'qwen2-tiny.gguf', 'llama-k-tiny-q4_k_m.gguf'];
const seedCache = new Map<number, GFile>();
function realSeed(i: number): GFile {
  if (!seedCache.has(i)) {
    const r = referenceRead(readFileSync(join(FIXTURES, 'gguf', SEEDS[i])));
    if (!r.valid) fail(`the reference reading refuses the seed ${SEEDS[i]}: ${r.why}`);
    seedCache.set(i, r.file);
  }
  return structuredClone(seedCache.get(i)!);
}

const scalarType = fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12);
const INTERESTING = [0n, 1n, 2n, 3n, 31n, 32n, 33n, 64n, 255n, 256n, 65535n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];
const hostileBig = fc.oneof(fc.constantFrom(...INTERESTING), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));

const hostileGValue: fc.Arbitrary<GValue> = fc.letrec<{ v: GValue }>((tie) => ({
  v: fc.oneof(
    { arbitrary: fc.record({ t: scalarType, v: hostileBig }).map((g) => (g.t === 6 || g.t === 12 ? { t: g.t, v: Number(g.v) } : g)), weight: 4 },
    { arbitrary: fc.record({ t: fc.constantFrom(6, 12), v: fc.constantFrom(NaN, Infinity, -0, 0.5, 32, 1e30) }), weight: 1 },
    { arbitrary: hostileString.filter((s): s is string => typeof s === 'string').map((s) => ({ t: 8, v: s })), weight: 3 },
    { arbitrary: fc.record({ t: fc.constant(9 as const), item: fc.constantFrom(0, 4, 6, 8, 9), items: fc.array(tie('v'), { maxLength: 3 }) }), weight: 1 },
    { arbitrary: fc.record({ t: fc.constantFrom(13, 99, 2 ** 32 - 1), v: fc.constant(0) }), weight: 1 },
  ),
})).v;

/** Edits of the decoded file, written back with the encoder. */
type Edit =
  | { kind: 'value'; at: number; value: GValue }
  | { kind: 'drop'; at: number }
  | { kind: 'dupKey'; at: number }
  | { kind: 'alignment'; value: GValue }
  | { kind: 'tensor'; at: number; field: 'dims' | 'ne' | 'type' | 'offset' | 'name'; pick: number; by: number };

const KEYS_OF_INTEREST = ['attention.head_count', 'attention.head_count_kv', 'embedding_length', 'block_count', 'feed_forward_length',
  'context_length', 'rope.freq_base', 'attention.key_length', 'rope.dimension_count', 'rope.scaling.type', 'attention.layer_norm_rms_epsilon'];

const edit: fc.Arbitrary<Edit> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('value' as const), at: where, value: hostileGValue }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('drop' as const), at: where }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('dupKey' as const), at: where }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('alignment' as const),
      value: fc.oneof(fc.constantFrom<GValue>({ t: 4, v: 0 }, { t: 4, v: 1 }, { t: 4, v: 3 }, { t: 4, v: 8 }, { t: 4, v: 64 }, { t: 4, v: 2 ** 31 },
        { t: 6, v: 32 }, { t: 12, v: 64.5 }, { t: 7, v: true }, { t: 8, v: '32' }, { t: 10, v: 16n }, { t: 5, v: -32 }), hostileGValue),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('tensor' as const), at: where, field: fc.constantFrom('dims' as const, 'ne' as const, 'type' as const, 'offset' as const, 'name' as const),
      pick: where, by: fc.integer({ min: -2, max: 2 }),
    }),
    weight: 5,
  },
);

function applyEdit(f: GFile, e: Edit): void {
  const pick = <T>(xs: T[], at: number) => xs[Math.floor(at * xs.length)];
  switch (e.kind) {
    case 'value': {
      // mostly the hyper-parameters and vocabulary the model is built from
      if (f.metadata.length === 0) return;
      const arch = f.metadata.find((m) => m.key === 'general.architecture')?.value;
      const prefix = arch && 'v' in arch ? String(arch.v) : 'llama';
      const keys = [...KEYS_OF_INTEREST.map((k) => `${prefix}.${k}`), ...f.metadata.map((m) => m.key)];
      const key = pick(keys, e.at);
      const m = f.metadata.find((x) => x.key === key);
      if (m) m.value = e.value; else f.metadata.push({ key, value: e.value });
      return;
    }
    case 'drop':
      if (f.metadata.length) f.metadata.splice(Math.floor(e.at * f.metadata.length), 1);
      return;
    case 'dupKey':
      if (f.metadata.length) f.metadata.push(structuredClone(pick(f.metadata, e.at)));
      return;
    case 'alignment': {
      const m = f.metadata.find((x) => x.key === 'general.alignment');
      if (m) m.value = e.value; else f.metadata.push({ key: 'general.alignment', value: e.value });
      return;
    }
    case 'tensor': {
      if (!f.tensors.length) return;
      const t = pick(f.tensors, e.at);
      switch (e.field) {
        case 'dims':
          t.ne = pick([[], [1n, 1n, 1n, 1n, 1n], t.ne.slice(0, 1), [...t.ne, 1n], [...t.ne, 2n]], e.pick);
          break;
        case 'ne':
          if (t.ne.length) t.ne[Math.floor(e.pick * t.ne.length)] = pick([0n, 1n, 31n, 33n, 255n, 2n ** 32n, 2n ** 53n, 2n ** 63n, t.ne[0] + BigInt(e.by)], e.pick);
          break;
        case 'type':
          t.type = pick([0, 1, 2, 3, 8, 12, 13, 14, 15, 30, 31, 39, 1000], e.pick);
          break;
        case 'offset': {
          const other = pick(f.tensors, e.pick);
          t.offset = pick([other.offset, t.offset + BigInt(e.by), t.offset + 32n * BigInt(e.by), 0n, 2n ** 40n, 2n ** 64n - 32n], (e.pick * 7) % 1);
          if (t.offset < 0n) t.offset = 0n;
          break;
        }
        case 'name':
          t.name = pick([pick(f.tensors, e.pick).name, '', 'token_embd.weight', 'output.weight', 'blk.0.attn_q.weight', 'rope_freqs.weight', '\u0000'], e.pick);
          break;
      }
    }
  }
}

interface Synthetic { metadata: { key: string; value: GValue }[]; tensors: { name: string; ne: number[]; type: number }[]; fill: number }

const synthetic: fc.Arbitrary<Synthetic> = fc.record({
  metadata: fc.uniqueArray(fc.record({ key: fc.oneof(fc.constantFrom('general.architecture', 'general.name', 'a', ''), fc.string({ maxLength: 8 })), value: hostileGValue }),
    { selector: (m) => m.key, maxLength: 4 }),
  tensors: fc.uniqueArray(fc.record({
    name: fc.oneof(fc.constantFrom('token_embd.weight', 'w', ''), fc.string({ maxLength: 6 })),
    type: fc.constantFrom(...Object.keys(READABLE).map(Number)),
    ne: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 3 }),
  }), { selector: (t) => t.name, maxLength: 4 }),
  fill: fc.integer({ min: 0, max: 255 }),
});

/** A synthetic file: tensors laid out one after another at aligned offsets. */
function encodeSynthetic(s: Synthetic): GFile {
  let offset = 0n;
  const tensors: GTensor[] = [];
  for (const t of s.tensors) {
    const [, per, bytes] = READABLE[t.type];
    const ne = [BigInt(per * t.ne[0]), ...t.ne.slice(1).map(BigInt)];
    tensors.push({ name: t.name, ne, type: t.type, offset });
    const n = (ne.reduce((a, b) => a * b, 1n) / BigInt(per)) * BigInt(bytes);
    offset += ((n + 31n) / 32n) * 32n;
  }
  const data = Uint8Array.from({ length: Number(offset) }, (_, i) => (s.fill + 7 * i) & 0xff);
  return { version: 3, metadata: s.metadata.filter((m) => m.key !== 'general.alignment'), tensors, data };
}

export type GgufInput = {
  seed: { real: number } | { synthetic: Synthetic };
  edits: Edit[];
  lies: { version: number | null; tensors: number | null; kv: number | null; alignPad: number | null };
  bytes: { edits: ByteEdit[]; header: boolean } | null;
  truncate: number | null;
};

export const ggufInput: fc.Arbitrary<GgufInput> = fc.record({
  seed: fc.oneof({ arbitrary: fc.record({ real: fc.integer({ min: 0, max: SEEDS.length - 1 }) }), weight: 2 }, { arbitrary: fc.record({ synthetic }), weight: 1 }),
  edits: fc.array(edit, { maxLength: 3 }),
  lies: fc.record({
    version: oneIn(8, fc.constantFrom(0, 1, 2, 4, 0x03000000)),
    tensors: oneIn(8, fc.integer({ min: -2, max: 2 })),
    kv: oneIn(8, fc.integer({ min: -2, max: 2 })),
    alignPad: oneIn(10, fc.constantFrom(1, 32)),
  }),
  bytes: oneIn(3, fc.record({ edits: byteEdits, header: fc.boolean() })),
  truncate: oneIn(10, where),
});

/** The file an input describes. */
export function ggufBytes(input: GgufInput): Buffer {
  const f = 'real' in input.seed ? realSeed(input.seed.real) : encodeSynthetic(input.seed.synthetic);
  for (const e of input.edits) applyEdit(f, e);
  const L = input.lies;
  let b = encodeGguf(f, {
    version: L.version ?? undefined, alignPad: L.alignPad ?? undefined,
    tensors: L.tensors === null ? undefined : BigInt.asUintN(64, BigInt(f.tensors.length + L.tensors)),
    kv: L.kv === null ? undefined : BigInt.asUintN(64, BigInt(f.metadata.length + L.kv)),
  });
  if (input.bytes) b = Buffer.from(applyByteEdits(b, input.bytes.edits, input.bytes.header ? b.length - f.data.length : 0));
  return input.truncate === null ? b : b.subarray(0, Math.floor(input.truncate * (b.length + 1)));
}

// ---------------------------------------------------------------------------------------------- check

export async function checkGguf(bytes: Uint8Array, dir: string): Promise<void> {
  const path = join(dir, 'model.gguf');
  writeFiles(dir, new Map([['model.gguf', bytes]]));
  const ref = referenceRead(bytes);
  const { paths } = await noFdLeak(() => fsTouched(async () => {
    const r = syncOutcome(() => GgufFile.open(path));
    noteOutcome('open', r);
    if (!r.ok) {
      if (ref.valid) fail(`refused a valid file: ${r.error.message}`);
      return;
    }
    const f = r.value;
    try {
      if (!ref.valid) fail(`accepted a file the format refuses (${ref.why})`);
      if (f.version !== ref.file.version || f.alignment !== ref.alignment) fail(`read version ${f.version} alignment ${f.alignment}, expected ${ref.file.version} ${ref.alignment}`);
      if (!isDeepStrictEqual(f.metadata, ref.metadata)) fail('the metadata differs from the reference reading');
      assertTensorsRead(f.tensors, ref.tensors, (name) => f.readBytes(name), bytes);
    } finally {
      f.close();
    }
    // the file reads: as a model, it loads and generates or is refused in one line
    const loaded = await outcome(() => loadModel(path, { device: 'cpu', maxBatch: 2 }));
    noteOutcome('load', loaded);
    if (!loaded.ok) return;
    const m = loaded.value;
    if (m.kind !== 'causal-lm') fail('a GGUF file loaded as an encoder');
    const g = await outcome(() => m.generator.generate('Hello world', { maxNewTokens: 2 }));
    noteOutcome('generate', g);
    if (g.ok && !g.value.ids.every((id) => Number.isInteger(id) && id >= 0 && id < m.generator.model.info.vocabSize)) fail(`generated ids out of the vocabulary: ${g.value.ids}`);
    m.generator.dispose();
  }));
  assertInside(paths, [dir]);
}

export const ggufTarget: Target<GgufInput> = {
  name: 'gguf',
  quick: 60,
  arbitrary: ggufInput,
  check: (input) => inCaseDir((dir) => checkGguf(ggufBytes(input), dir)),
};
