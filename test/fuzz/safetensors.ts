// Fuzzing the safetensors reader against an independent reading of the format: every file is either
// refused with a PeregrineError or read exactly as the reference reading says (same tensors, same byte
// ranges, every byte from inside the file), and a file the reference reading accepts is never refused.
import { join } from 'node:path';
import fc from 'fast-check';
import { DTYPE_BYTES, SafetensorsFile } from '../../src/loaders/safetensors.js';
import { encodeSafetensors } from '../../src/loaders/safetensors-write.js';
import { assertTensorsRead, fail, inCaseDir, noFdLeak, noteOutcome, syncOutcome, writeFiles, type Target } from './harness.js';
import { applyByteEdits, applyJsonEdits, byteEdits, hostileValue, jsonEdits, oneIn, Raw, where, stringify, type ByteEdit, type Hostile, type Json, type JsonEdit } from './mutate.js';
import { safetensorsSeeds } from './seeds.js';

const MAX_HEADER = 100 * 1024 * 1024;
const FLOATS = new Set(['F32', 'F16', 'BF16']);

// ---------------------------------------------------------------------------------- reference reading

interface RefTensor {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}
type Reference = { valid: true; tensors: Map<string, RefTensor> } | { valid: false; why: string };

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** The format as Peregrine documents it, written independently of the reader (exact arithmetic in BigInt). */
export function referenceRead(b: Uint8Array): Reference {
  const no = (why: string): Reference => ({ valid: false, why });
  if (b.length < 8) return no('shorter than the length field');
  const n = Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER)) return no('header length over the limit');
  if (8n + n > BigInt(b.length)) return no('header beyond the file');
  const start = 8 + Number(n);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(b.subarray(8, start)).toString('utf8'));
  } catch {
    return no('header is not JSON');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) return no('header is not an object');
  const dataSize = BigInt(b.length - start);
  const tensors = new Map<string, RefTensor>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (v === null) continue;
      if (typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) return no('metadata is not a map of strings');
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return no(`entry ${name} is not an object`);
    const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) return no(`${name}: dtype`);
    if (!Array.isArray(shape) || !shape.every(isCount)) return no(`${name}: shape`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) return no(`${name}: offsets`);
    const bytes = shape.reduce((a: bigint, d: number) => a * BigInt(d), 1n) * BigInt(DTYPE_BYTES[dtype]);
    if (BigInt(offs[1] - offs[0]) !== bytes) return no(`${name}: size`);
    if (BigInt(offs[1]) > dataSize) return no(`${name}: beyond the data`);
    tensors.set(name, { dtype, shape, begin: start + offs[0], end: start + offs[1] });
  }
  const ranges = [...tensors.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < ranges.length; i++) if (ranges[i].begin < ranges[i - 1].end) return no('overlap');
  return { valid: true, tensors };
}

// ----------------------------------------------------------------------------------------- mutations

/** How the 8-byte length field is written after the header was edited. */
type LengthField = { kind: 'exact'; pad: number } | { kind: 'delta'; d: number } | { kind: 'value'; v: bigint };

const lengthField: fc.Arbitrary<LengthField> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('exact' as const), pad: fc.integer({ min: 0, max: 9 }) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('delta' as const), d: fc.integer({ min: -9, max: 9 }) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('value' as const),
      v: fc.constantFrom(0n, 1n, 2n, 7n, 0x7fffffffn, 0xffffffffn, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, BigInt(MAX_HEADER), BigInt(MAX_HEADER) + 1n),
    }),
    weight: 1,
  },
);

/** Edits of one tensor's byte range: out of range, shifted onto a neighbour, copied from another tensor (overlap), or nonsense. */
type RangeEdit = { tensor: number; other: number; kind: 'begin' | 'end' | 'shift' | 'overlap'; pick: number; by: number };

const rangeEdit: fc.Arbitrary<RangeEdit> = fc.record({
  tensor: where,
  other: where,
  kind: fc.constantFrom('begin' as const, 'end' as const, 'shift' as const, 'overlap' as const),
  pick: where,
  by: fc.integer({ min: -8, max: 8 }),
});

function applyRangeEdit(header: Record<string, Hostile>, e: RangeEdit, dataSize: number): void {
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  if (names.length === 0) return;
  const t = header[names[Math.floor(e.tensor * names.length)]] as { data_offsets?: Hostile } | null;
  const o = header[names[Math.floor(e.other * names.length)]] as { data_offsets?: [number, number] } | null;
  if (!t || typeof t !== 'object' || !Array.isArray(t.data_offsets)) return;
  const [b, en] = t.data_offsets as [number, number];
  const [ob, oe] = o && Array.isArray(o.data_offsets) ? o.data_offsets : [0, 0];
  const candidates: Hostile[] = [0, dataSize, dataSize + 1, dataSize - 1, b + 1, b - 1, en + 1, en - 1, ob, oe, ob + 1, oe - 1,
    2 ** 32, 2 ** 53, 2 ** 64, -1, -(2 ** 53), 1.5, '0', null, new Raw('1e999')];
  const v = candidates[Math.floor(e.pick * candidates.length)];
  switch (e.kind) {
    case 'begin': t.data_offsets = [v, en]; break;
    case 'end': t.data_offsets = [b, v]; break;
    case 'shift': t.data_offsets = [b + e.by, en + e.by]; break;
    case 'overlap':
      if (o && o !== t) Object.assign(t, structuredClone(o));
      break;
  }
}

// ------------------------------------------------------------------------------------------- inputs

interface SyntheticTensor {
  name: string;
  dtype: string;
  shape: number[];
}

const synthetic = fc.record({
  tensors: fc.uniqueArray(
    fc.record({
      name: fc.oneof(fc.constantFrom('w', 'b', 'h.0.attn.c_attn.weight', 'a.b.c', '', ' ', '\u0000', 'a\rb', 'a\nb', '\u2028', 'ü', 'x'.repeat(200)), fc.string({ maxLength: 10 })).filter((s) => s !== '__metadata__'),
      dtype: fc.constantFrom(...Object.keys(DTYPE_BYTES)),
      shape: fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 3 }),
    }),
    { selector: (t) => t.name, maxLength: 5 },
  ),
  metadata: fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
  fill: fc.integer({ min: 0, max: 255 }),
});

function encodeSynthetic(s: { tensors: SyntheticTensor[]; metadata: Record<string, string>; fill: number }): Buffer {
  const tensors = s.tensors.map((t, i) => {
    const n = t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
    const data = new Uint8Array(n);
    for (let j = 0; j < n; j++) data[j] = (s.fill + 31 * i + 7 * j) & 0xff;
    return { ...t, data };
  });
  return Buffer.from(encodeSafetensors(tensors, s.metadata));
}

export type SafetensorsInput = {
  seed: { real: number } | { synthetic: { tensors: SyntheticTensor[]; metadata: Record<string, string>; fill: number } };
  mutation:
    | { kind: 'none' }
    | { kind: 'bytes'; edits: ByteEdit[]; header: boolean }
    | { kind: 'header'; edits: JsonEdit[]; ranges: RangeEdit[]; length: LengthField; truncate: number | null };
};

const HEADER_KEYS = ['dtype', 'shape', 'data_offsets', '__metadata__', 'format'];

export const safetensorsInput: fc.Arbitrary<SafetensorsInput> = fc.record({
  seed: fc.oneof(
    { arbitrary: fc.record({ real: fc.integer({ min: 0, max: 1 }) }), weight: 1 },
    { arbitrary: fc.record({ synthetic }), weight: 2 },
  ),
  mutation: fc.oneof(
    { arbitrary: fc.constant({ kind: 'none' as const }), weight: 1 },
    { arbitrary: fc.record({ kind: fc.constant('bytes' as const), edits: byteEdits, header: fc.boolean() }), weight: 4 },
    {
      arbitrary: fc.record({
        kind: fc.constant('header' as const),
        edits: fc.oneof(fc.constant([] as JsonEdit[]), jsonEdits(HEADER_KEYS, hostileValue)),
        ranges: fc.array(rangeEdit, { maxLength: 2 }),
        length: lengthField,
        truncate: oneIn(4, where),
      }),
      weight: 5,
    },
  ),
});

/** The file an input describes. */
export function safetensorsBytes(input: SafetensorsInput): Buffer {
  const seed = 'real' in input.seed ? safetensorsSeeds()[input.seed.real] : encodeSynthetic(input.seed.synthetic);
  const m = input.mutation;
  if (m.kind === 'none') return seed;
  const headerLen = Number(seed.readBigUInt64LE(0));
  if (m.kind === 'bytes') return Buffer.from(applyByteEdits(seed, m.edits, m.header ? 8 + headerLen : 0));
  const data = seed.subarray(8 + headerLen);
  const header = applyJsonEdits(JSON.parse(seed.subarray(8, 8 + headerLen).toString('utf8')) as Json, m.edits);
  if (header !== null && typeof header === 'object' && !Array.isArray(header) && !(header instanceof Raw)) {
    for (const r of m.ranges) applyRangeEdit(header, r, data.length);
  }
  const text = Buffer.from(stringify(header), 'utf8');
  const L = m.length;
  const padded = L.kind === 'exact' ? Buffer.concat([text, Buffer.alloc(L.pad, 0x20)]) : text;
  const len = Buffer.alloc(8);
  const field = L.kind === 'value' ? L.v : BigInt(Math.max(0, padded.length + (L.kind === 'delta' ? L.d : 0)));
  len.writeBigUInt64LE(field);
  const file = Buffer.concat([len, padded, data]);
  return m.truncate === null ? file : file.subarray(0, Math.floor(m.truncate * (file.length + 1)));
}

/** Opens the file and checks the reader against the reference reading; reads every tensor it accepted. */
export async function checkSafetensors(bytes: Uint8Array, dir: string): Promise<void> {
  const path = join(dir, 'model.safetensors');
  writeFiles(dir, new Map([['model.safetensors', bytes]]));
  const ref = referenceRead(bytes);
  await noFdLeak(async () => {
    const r = syncOutcome(() => SafetensorsFile.open(path));
    noteOutcome('open', r);
    if (!r.ok) {
      if (ref.valid) fail(`refused a valid file: ${r.error.message}`);
      return;
    }
    const f = r.value;
    try {
      if (!ref.valid) fail(`accepted a file the format refuses (${ref.why})`);
      assertTensorsRead(f.tensors, ref.tensors, (name) => f.readBytes(name), bytes, (name, want) => {
        if (FLOATS.has(want.dtype)) {
          const n = want.shape.reduce((a, d) => a * d, 1);
          if (f.readF32(name).length !== n) fail(`tensor ${JSON.stringify(name)}: readF32 gave the wrong length`);
        } else {
          const e = syncOutcome(() => f.readF32(name));
          if (e.ok) fail(`tensor ${JSON.stringify(name)}: readF32 accepted dtype ${want.dtype}`);
        }
      });
      if (Object.keys(f.metadata).some((k) => typeof f.metadata[k] !== 'string')) fail('metadata holds a value that is not a string');
    } finally {
      f.close();
    }
  });
}

export const safetensorsTarget: Target<SafetensorsInput> = {
  name: 'safetensors',
  quick: 100,
  arbitrary: safetensorsInput,
  check: (input) => inCaseDir((dir) => checkSafetensors(safetensorsBytes(input), dir)),
};
