// safetensors writer: used to save converted checkpoints and to build test and benchmark models.
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { DTYPE_BYTES } from './safetensors.js';

export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  /** the tensor's bytes in little-endian order, or fp32 values when dtype is F32 */
  data: Uint8Array | Float32Array;
}

interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
}

function byteSize(t: TensorSpec): number {
  return t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
}

/** The 8-byte length and the JSON header (padded so the data starts 8-byte aligned, as the reference writer does). */
function encodeHeader(tensors: TensorSpec[], metadata: Record<string, string>): { head: Buffer; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = byteSize(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.concat([json, Buffer.from(' '.repeat((8 - (json.length % 8)) % 8))]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(padded.length));
  return { head: Buffer.concat([len, padded]), dataBytes: offset };
}

export function encodeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  for (const t of tensors) {
    if (t.data.byteLength !== byteSize(t)) throw new Error(`tensor ${t.name}: ${t.data.byteLength} bytes given, shape and dtype need ${byteSize(t)}`);
  }
  const { head, dataBytes } = encodeHeader(tensors, metadata);
  const out = new Uint8Array(head.length + dataBytes);
  out.set(head, 0);
  let pos = head.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata: Record<string, string> = {}): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}

/** Writes a file too large to hold in memory: `fill` produces each tensor's bytes in turn. */
export function writeSafetensorsStreaming<S extends TensorSpec>(path: string, tensors: S[], fill: (t: S, bytes: Uint8Array) => void): void {
  const fd = openSync(path, 'w');
  try {
    const writeAll = (b: Uint8Array) => {
      for (let done = 0; done < b.length;) done += writeSync(fd, b, done, b.length - done);
    };
    writeAll(encodeHeader(tensors, {}).head);
    for (const t of tensors) {
      const bytes = new Uint8Array(byteSize(t));
      fill(t, bytes);
      writeAll(bytes);
    }
  } finally {
    closeSync(fd);
  }
}
