// The safetensors reader: dtypes, byte ranges, and every way a file can be malformed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PeregrineError } from '../src/errors.js';
import { f32ToBf16Bits, f32ToF16Bits } from '../src/loaders/dtypes.js';
import { SafetensorsFile } from '../src/loaders/safetensors.js';
import { encodeSafetensors } from '../src/loaders/safetensors-write.js';

const dir = mkdtempSync(join(tmpdir(), 'peregrine-st-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function file(bytes: Uint8Array | Buffer): string {
  const p = join(dir, `f${n++}.safetensors`);
  writeFileSync(p, bytes);
  return p;
}

/** A file from a raw header object and data section. */
function raw(header: unknown, data: Uint8Array = new Uint8Array(0), lengthField?: bigint): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  return file(Buffer.concat([len, json, data]));
}

function rejects(path: string, pattern: RegExp): void {
  assert.throws(() => SafetensorsFile.open(path), (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${err}`);
    assert.equal(err.code, 'bad-safetensors');
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  });
}

describe('reading', () => {
  const values = [0, 1, -2.5, 65504, 1e-3, -0.1, 3.140625];
  const f16 = new Uint16Array(values.map(f32ToF16Bits));
  const bf16 = new Uint16Array(values.map(f32ToBf16Bits));
  const path = file(encodeSafetensors([
    { name: 'a', dtype: 'F32', shape: [7], data: Float32Array.from(values) },
    { name: 'h', dtype: 'F16', shape: [7, 1], data: new Uint8Array(f16.buffer) },
    { name: 'b', dtype: 'BF16', shape: [1, 7], data: new Uint8Array(bf16.buffer) },
    { name: 'ids', dtype: 'I64', shape: [2], data: new Uint8Array(16) },
  ], { format: 'pt' }));

  test('F32, F16 and BF16 widen to fp32', () => {
    const st = SafetensorsFile.open(path);
    assert.deepEqual(Array.from(st.readF32('a')), Array.from(Float32Array.from(values)));
    const h = st.readF32('h');
    values.forEach((v, i) => assert.ok(Math.abs(h[i] - v) <= Math.abs(v) * 1e-3 + 1e-7, `f16 ${v} -> ${h[i]}`));
    const b = st.readF32('b');
    values.forEach((v, i) => assert.ok(Math.abs(b[i] - v) <= Math.abs(v) * 4e-3, `bf16 ${v} -> ${b[i]}`));
    assert.deepEqual(st.info('h').shape, [7, 1]);
    assert.equal(st.metadata.format, 'pt');
    st.close();
  });

  test('a tensor of another dtype is reported when read as floats', () => {
    const st = SafetensorsFile.open(path);
    assert.throws(() => st.readF32('ids'), /dtype I64/);
    assert.throws(() => st.readF32('nope'), /no.*nope|nope.*not in/);
    st.close();
  });

  test('a name with a carriage return or line separator still gives a one-line message (found by fuzzing)', () => {
    const st = SafetensorsFile.open(file(encodeSafetensors([
      { name: 'a\rb', dtype: 'I8', shape: [1], data: new Uint8Array(1) },
      { name: '\u2028', dtype: 'I8', shape: [1], data: new Uint8Array(1) },
    ])));
    for (const name of ['a\rb', '\u2028']) {
      assert.throws(() => st.readF32(name), (e: unknown) => e instanceof PeregrineError && !/[\r\n\u2028\u2029]/.test(e.message) && /dtype I8/.test(e.message));
    }
    st.close();
  });

  test('fp16 subnormals, infinities and NaN', () => {
    const bits = new Uint16Array([0x0001, 0x7c00, 0xfc00, 0x7e00, 0x8000]);
    const st = SafetensorsFile.open(file(encodeSafetensors([{ name: 'x', dtype: 'F16', shape: [5], data: new Uint8Array(bits.buffer) }])));
    const x = st.readF32('x');
    assert.equal(x[0], 2 ** -24);
    assert.equal(x[1], Infinity);
    assert.equal(x[2], -Infinity);
    assert.ok(Number.isNaN(x[3]));
    assert.ok(Object.is(x[4], -0));
    st.close();
  });
});

describe('malformed files', () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  test('shorter than the length field', () => rejects(file(Buffer.from([1, 2, 3])), /shorter than the 8-byte header/));
  test('header length beyond the file (truncated)', () => rejects(raw(ok, new Uint8Array(8), 4096n), /truncated/));
  test('absurd header length', () => rejects(raw(ok, new Uint8Array(8), 2n ** 40n), /header length/));
  test('header is not JSON', () => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(5n);
    rejects(file(Buffer.concat([len, Buffer.from('{nope')])), /not valid JSON/);
  });
  test('header is not an object', () => rejects(raw([1, 2]), /not a JSON object/));
  test('unknown dtype', () => rejects(raw({ w: { dtype: 'F12', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), /unknown dtype/));
  test('negative or fractional shape', () => rejects(raw({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, new Uint8Array(8)), /invalid shape/));
  test('shape x dtype does not match the byte range', () =>
    rejects(raw({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(12)), /12 bytes but its byte range holds 8/));
  test('range leaves the file', () => rejects(raw(ok, new Uint8Array(4)), /beyond its 4 bytes/));
  test('reversed offsets', () => rejects(raw({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, new Uint8Array(8)), /invalid data_offsets/));
  test('overlapping ranges', () =>
    rejects(raw({
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)), /overlap/));
  test('metadata that is not a map of strings (found by fuzzing)', () => {
    for (const metadata of [{ '': 0 }, [], 'pt', 5, { format: { nested: 'x' } }]) {
      rejects(raw({ __metadata__: metadata, ...ok }, new Uint8Array(8)), /__metadata__ must map names to strings/);
    }
    const st = SafetensorsFile.open(raw({ __metadata__: null, ...ok }, new Uint8Array(8)));
    assert.deepEqual(st.metadata, {});
    st.close();
  });
  test('a file that is not there', () => {
    assert.throws(() => SafetensorsFile.open(join(dir, 'missing.safetensors')), (e: unknown) => e instanceof PeregrineError && e.code === 'file-missing');
  });
});
