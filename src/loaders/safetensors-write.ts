// safetensors writer: used to save converted checkpoints and to build test and benchmark models.
import { writeFileSync } from 'node:fs';
import { DTYPE_BYTES } from './safetensors.js';

export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  /** the tensor's bytes in little-endian order, or fp32 values when dtype is F32 */
  data: Uint8Array | Float32Array;
}

export function encodeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== bytes) throw new Error(`tensor ${t.name}: ${t.data.byteLength} bytes given, shape and dtype need ${bytes}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  // pad the header with spaces so the data starts 8-byte aligned, as the reference writer does
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerBytes = Buffer.concat([json, Buffer.from(' '.repeat((8 - (json.length % 8)) % 8))]);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata: Record<string, string> = {}): void {
  writeFileSync(path, encodeSafetensors(tensors, metadata));
}
