// safetensors reader: an 8-byte little-endian header length, a JSON header, then the tensor bytes.
// Only the header is read at open; each tensor is read from its own byte range when asked for.
import { closeSync, readSync } from 'node:fs';
import { fail, show } from '../errors.js';
import { openAndParse } from './open-file.js';
import { toFloat32, type StorageDType } from './dtypes.js';

export const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);
const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private fd: number;

  private constructor(path: string, fd: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.path = path;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    return openAndParse(path, 'safetensors file', (fd, size) => {
      const { tensors, metadata } = parseHeader(fd, size, path);
      return new SafetensorsFile(path, fd, tensors, metadata);
    });
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
      if (n === 0) fail('bad-safetensors', `${this.path} ended while reading tensor ${name}; the file is truncated, download it again`);
      done += n;
    }
    return out;
  }

  /** The tensor widened to fp32 (F32, F16 and BF16 tensors). */
  readF32(name: string): Float32Array {
    const t = this.info(name);
    if (!FLOAT_DTYPES.has(t.dtype)) {
      fail('bad-safetensors', `tensor ${name} in ${this.path} has dtype ${t.dtype}; Peregrine reads F32, F16 and BF16 weights`);
    }
    return toFloat32(this.readBytes(name), t.dtype as StorageDType);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function parseHeader(fd: number, fileSize: number, path: string): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const bad = (what: string): never => fail('bad-safetensors', `${path} is not a valid safetensors file: ${what}`);
  if (fileSize < 8) bad(`it is ${fileSize} bytes long, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER) bad(`the header length field says ${headerLen} bytes (limit ${MAX_HEADER})`);
  if (8 + headerLen > fileSize) bad(`the header length field says ${headerLen} bytes but the file has only ${fileSize - 8} after it (truncated?)`);
  const headerBuf = Buffer.alloc(headerLen);
  readSync(fd, headerBuf, 0, headerLen, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch {
    bad('the header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('the header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (value !== null && (typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((x) => typeof x === 'string'))) {
        bad('__metadata__ must map names to strings');
      }
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof v !== 'object' || v === null) bad(`entry ${name} is not an object`);
    const dtype = v.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) bad(`tensor ${name} has unknown dtype ${show(dtype)}`);
    const shape = v.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`tensor ${name} has an invalid shape`);
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1]) {
      bad(`tensor ${name} has invalid data_offsets`);
    }
    const [b, e] = offs as [number, number];
    const expected = (shape as number[]).reduce((a, d) => a * d, 1) * DTYPE_BYTES[dtype as string];
    if (e - b !== expected) bad(`tensor ${name} has shape [${shape}] x ${dtype} = ${expected} bytes but its byte range holds ${e - b}`);
    if (e > dataSize) bad(`tensor ${name} ends at byte ${e} of the data section, beyond its ${dataSize} bytes (truncated file?)`);
    tensors.set(name, { name, dtype: dtype as string, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
  }
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) bad(`tensors ${sorted[i - 1].name} and ${sorted[i].name} overlap`);
  }
  return { tensors, metadata };
}
