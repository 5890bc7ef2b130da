// GGUF reader (llama.cpp's format, versions 2 and 3): "GGUF", u32 version, u64 tensor count, u64 metadata count,
// the metadata (key string, u32 value type, value), the tensor infos (name, u32 dims, u64 ne[dims], u32 ggml type,
// u64 offset into the data section), then the data section at the next multiple of general.alignment (default 32).
// Strings are a u64 length and UTF-8 bytes; everything is little-endian. Only the header is read at open (in
// growing chunks); a tensor's bytes are read when asked for. Every count, length and offset is checked against the
// file before it is used.
import { closeSync, readSync } from 'node:fs';
import { fail, show } from '../errors.js';
import { openAndParse } from './open-file.js';
import { isQuantType, QUANT_BLOCKS } from './quant.js';
import type { TensorInfo } from './safetensors.js';

export type GgufValue = number | boolean | string | GgufValue[];

/** ggml type ids; Peregrine reads the named ones with a dtype, and names the others when it refuses them. */
const GGML_TYPES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K',
  13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S',
  22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};
const READ = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_K', 'Q5_K', 'Q6_K'];
const FLOAT_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };
const MAGIC = 0x46554747; // "GGUF" little-endian
const FIRST_CHUNK = 1 << 20;
const MAX_DEPTH = 4;
/** items of one metadata array (vocabularies have a few hundred thousand) */
const MAX_ITEMS = 1 << 26;

/** The header as it is read: bytes fetched from the file as the cursor needs them. */
class Cursor {
  private buf: Buffer;
  private start = 0; // file offset of buf[0]
  pos = 0; // file offset of the next byte

  constructor(private readonly fd: number, readonly size: number, private readonly bad: (what: string) => never) {
    this.buf = Buffer.alloc(0);
  }

  /** Makes bytes [pos, pos + n) available; a field beyond the end of the file is a truncated file. */
  private need(n: number, what: string): number {
    if (this.pos + n > this.size) this.bad(`${what} runs past the end of the file (truncated?)`);
    const at = this.pos - this.start;
    if (at + n <= this.buf.length) return at;
    const want = Math.min(this.size - this.pos, Math.max(n, FIRST_CHUNK, 2 * this.buf.length));
    const next = Buffer.alloc(want);
    let done = 0;
    while (done < want) {
      const got = readSync(this.fd, next, done, want - done, this.pos + done);
      if (got === 0) this.bad(`${what} runs past the end of the file (truncated?)`);
      done += got;
    }
    this.buf = next;
    this.start = this.pos;
    return 0;
  }

  u8(what: string): number { const a = this.need(1, what); this.pos += 1; return this.buf[a]; }
  u16(what: string): number { const a = this.need(2, what); this.pos += 2; return this.buf.readUInt16LE(a); }
  u32(what: string): number { const a = this.need(4, what); this.pos += 4; return this.buf.readUInt32LE(a); }
  i8(what: string): number { const a = this.need(1, what); this.pos += 1; return this.buf.readInt8(a); }
  i16(what: string): number { const a = this.need(2, what); this.pos += 2; return this.buf.readInt16LE(a); }
  i32(what: string): number { const a = this.need(4, what); this.pos += 4; return this.buf.readInt32LE(a); }
  f32(what: string): number { const a = this.need(4, what); this.pos += 4; return this.buf.readFloatLE(a); }
  f64(what: string): number { const a = this.need(8, what); this.pos += 8; return this.buf.readDoubleLE(a); }

  /** A 64-bit integer as a number; beyond 2^53 it is refused (no count or offset in a file that fits a disk is that large). */
  u64(what: string): number {
    const a = this.need(8, what);
    this.pos += 8;
    const v = this.buf.readBigUInt64LE(a);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.bad(`${what} is ${v}, beyond what Peregrine reads (2^53)`);
    return Number(v);
  }

  i64(what: string): number {
    const a = this.need(8, what);
    this.pos += 8;
    const v = this.buf.readBigInt64LE(a);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) this.bad(`${what} is ${v}, beyond what Peregrine reads (2^53)`);
    return Number(v);
  }

  str(what: string): string {
    const n = this.u64(`the length of ${what}`);
    const a = this.need(n, what);
    this.pos += n;
    return this.buf.toString('utf8', a, a + n);
  }
}

export class GgufFile {
  readonly tensors: Map<string, TensorInfo>;

  private constructor(
    readonly path: string, private fd: number, readonly version: number, readonly alignment: number,
    readonly metadata: Map<string, GgufValue>, tensors: Map<string, TensorInfo>,
  ) {
    this.tensors = tensors;
  }

  static open(path: string): GgufFile {
    return openAndParse(path, 'GGUF file', (fd, size) => GgufFile.parse(path, fd, size));
  }

  private static parse(path: string, fd: number, size: number): GgufFile {
    const bad = (what: string): never => fail('bad-gguf', `${path} is not a valid GGUF file: ${what}`);
    const c = new Cursor(fd, size, bad);
    const magic = c.u32('the magic number');
    if (magic !== MAGIC) bad(`it does not start with "GGUF" (found ${show(Buffer.from([magic & 255, (magic >> 8) & 255, (magic >> 16) & 255, magic >>> 24]).toString('latin1'))})`);
    const version = c.u32('the version');
    if (version === 1) bad('it is GGUF version 1, which llama.cpp replaced in 2023; convert the model again with a current llama.cpp');
    if (version !== 2 && version !== 3) {
      bad(version > 0xffff ? `its version field reads ${version}: a big-endian file, which Peregrine does not read` : `version ${version} is not one Peregrine reads (2 and 3)`);
    }
    const tensorCount = c.u64('the tensor count');
    const kvCount = c.u64('the metadata count');
    // every entry takes at least 8 + 4 (metadata) or 8 + 4 + 8 + 4 + 8 (tensor) bytes
    if (kvCount * 12 + tensorCount * 32 > size) bad(`it claims ${kvCount} metadata entries and ${tensorCount} tensors, more than its ${size} bytes can hold`);

    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = c.str(`metadata key ${i}`);
      if (metadata.has(key)) bad(`metadata key ${show(key)} appears twice`);
      metadata.set(key, readValue(c, c.u32(`the type of ${show(key)}`), `metadata ${show(key)}`, 0, bad));
    }
    const align = metadata.get('general.alignment') ?? 32;
    if (typeof align !== 'number' || !Number.isSafeInteger(align) || align <= 0 || align > 2 ** 30 || (align & (align - 1)) !== 0) {
      bad(`general.alignment is ${show(align)}; it must be a power of two`);
    }
    const alignment = align as number;

    const raw: { name: string; type: string; shape: number[]; offset: number; bytes: number }[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      const name = c.str(`the name of tensor ${i}`);
      if (names.has(name)) bad(`tensor ${show(name)} appears twice`);
      names.add(name);
      const dims = c.u32(`the dimension count of ${show(name)}`);
      if (dims < 1 || dims > 4) bad(`tensor ${show(name)} has ${dims} dimensions (1 to 4 allowed)`);
      const ne: number[] = [];
      let count = 1;
      for (let d = 0; d < dims; d++) {
        const n = c.u64(`dimension ${d} of ${show(name)}`);
        if (n < 1) bad(`tensor ${show(name)} has an empty dimension`);
        count *= n;
        if (!Number.isSafeInteger(count) || count > size * 8) bad(`tensor ${show(name)} has more elements than the file can hold`);
        ne.push(n);
      }
      const id = c.u32(`the type of ${show(name)}`);
      const type = GGML_TYPES[id];
      if (type === undefined) bad(`tensor ${show(name)} has unknown ggml type ${id}`);
      if (!READ.includes(type)) {
        fail('unsupported-config', `${path}: tensor ${show(name)} has ggml type ${type}, which Peregrine does not read (it reads ${READ.join(', ')}); requantize the file (llama-quantize ... Q4_K_M or Q8_0)`);
      }
      const offset = c.u64(`the offset of ${show(name)}`);
      if (offset % alignment !== 0) bad(`tensor ${show(name)} starts at offset ${offset}, not a multiple of the alignment ${alignment}`);
      let bytes: number;
      if (isQuantType(type)) {
        const b = QUANT_BLOCKS[type];
        if (ne[0] % b.elements !== 0) bad(`tensor ${show(name)} is ${type} with rows of ${ne[0]} values, not a multiple of its ${b.elements}-value blocks`);
        bytes = (count / b.elements) * b.bytes;
      } else {
        bytes = count * FLOAT_BYTES[type];
      }
      raw.push({ name, type, shape: ne.slice().reverse(), offset, bytes });
    }
    const dataStart = Math.ceil(c.pos / alignment) * alignment;
    const tensors = new Map<string, TensorInfo>();
    for (const t of raw) {
      const begin = dataStart + t.offset, end = begin + t.bytes;
      if (end > size) bad(`tensor ${show(t.name)} ends at byte ${end}, beyond the file's ${size} (truncated?)`);
      tensors.set(t.name, { name: t.name, dtype: t.type, shape: t.shape, begin, end });
    }
    const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].begin < sorted[i - 1].end) bad(`tensors ${show(sorted[i - 1].name)} and ${show(sorted[i].name)} overlap`);
    }
    return new GgufFile(path, fd, version, alignment, metadata, tensors);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) fail('weights-mismatch', `tensor ${name} is not in ${this.path}`);
    return t;
  }

  /** The tensor's bytes, in a fresh (aligned) buffer. */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    const out = new Uint8Array(new ArrayBuffer(t.end - t.begin));
    let done = 0;
    while (done < out.length) {
      const n = readSync(this.fd, out, done, out.length - done, t.begin + done);
      if (n === 0) fail('bad-gguf', `${this.path} ended while reading tensor ${name}; the file is truncated, download it again`);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array, 10 u64, 11 i64, 12 f64. */
function readValue(c: Cursor, type: number, what: string, depth: number, bad: (w: string) => never): GgufValue {
  switch (type) {
    case 0: return c.u8(what);
    case 1: return c.i8(what);
    case 2: return c.u16(what);
    case 3: return c.i16(what);
    case 4: return c.u32(what);
    case 5: return c.i32(what);
    case 6: return c.f32(what);
    case 7: {
      const b = c.u8(what);
      if (b > 1) bad(`${what} is a bool of value ${b}`);
      return b === 1;
    }
    case 8: return c.str(what);
    case 9: {
      if (depth >= MAX_DEPTH) bad(`${what} nests arrays more than ${MAX_DEPTH} deep`);
      const item = c.u32(`the item type of ${what}`);
      const n = c.u64(`the length of ${what}`);
      // the smallest item is one byte (a string takes at least its 8-byte length)
      if (n * (item === 8 ? 8 : 1) > c.size - c.pos) bad(`${what} claims ${n} items, more than the rest of the file holds`);
      if (n > MAX_ITEMS) bad(`${what} claims ${n} items, beyond the ${MAX_ITEMS} Peregrine reads`);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, item, what, depth + 1, bad);
      return out;
    }
    case 10: return c.u64(what);
    case 11: return c.i64(what);
    case 12: return c.f64(what);
    default: return bad(`${what} has unknown value type ${type}`);
  }
}
