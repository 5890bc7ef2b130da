// Fuzzing the pytorch_model.bin reader: torch.save archives (fixtures of test/fixtures/torch-bin) with structured
// edits of data.pkl (opcodes deleted, repeated, swapped or inserted from a hostile list; ints, strings and memo
// indexes rewritten) and of the archive (entries dropped, repeated, renamed, reordered, claimed compressed, their
// sizes or checksums wrong; ZIP64, data descriptors, alignment), then byte edits. Every archive is either refused
// with a PeregrineError or read with every tensor's bytes inside its claims; an archive changed only in its zip
// layout reads exactly as the original does.
import { join } from 'node:path';
import fc from 'fast-check';
import { DTYPE_BYTES } from '../../src/loaders/safetensors.js';
import { TorchBinFile } from '../../src/loaders/torch-bin.js';
import { writeZip, zipEntries, type ZipInput, type ZipLayout } from '../helpers/zip-write.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { fail, inCaseDir, noFdLeak, noteOutcome, syncOutcome, writeFiles, type Target } from './harness.js';
import { applyByteEdits, byteEdits, oneIn, where, type ByteEdit } from './mutate.js';

// ------------------------------------------------------------------------------------------------- seeds

const SEED_FILES = ['views.bin', 'llama3-tiny-sharded/pytorch_model-00002-of-00002.bin', 'hostile/duplicate-key.bin', 'hostile/training-checkpoint.bin', 'hostile/reduce-storage.bin'];
let seedCache: ZipInput[][] | null = null;
const seeds = (): ZipInput[][] => (seedCache ??= SEED_FILES.map((f) => zipEntries(join(FIXTURES, 'torch-bin', f))));

// ------------------------------------------------------------------------------------ pickle opcodes

/** One opcode and its argument bytes, as pickletools would split them (written here, apart from the reader). */
interface Op { code: number; arg: Buffer }

const FIXED: Record<number, number> = { 0x80: 1, 0x4a: 4, 0x4b: 1, 0x4d: 2, 0x71: 1, 0x72: 4, 0x68: 1, 0x6a: 4, 0x47: 8, 0x95: 8 };

function splitOps(b: Buffer): Op[] {
  const ops: Op[] = [];
  let p = 0;
  while (p < b.length) {
    const code = b[p];
    let len = FIXED[code] ?? 0;
    if (code === 0x8a) len = 1 + (b[p + 1] ?? 0); // LONG1
    else if (code === 0x58) len = 4 + (p + 5 <= b.length ? b.readUInt32LE(p + 1) : 0); // BINUNICODE
    else if (code === 0x63) { // GLOBAL: two lines
      const a = b.indexOf(0x0a, p + 1), c = a < 0 ? -1 : b.indexOf(0x0a, a + 1);
      len = c < 0 ? b.length - p - 1 : c - p;
    }
    len = Math.min(len, b.length - p - 1);
    ops.push({ code, arg: b.subarray(p + 1, p + 1 + len) });
    p += 1 + len;
  }
  return ops;
}

const joinOps = (ops: Op[]): Buffer => Buffer.concat(ops.flatMap((o) => [Buffer.from([o.code]), o.arg]));

const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const str = (s: string): Op => { const t = Buffer.from(s, 'utf8'); return { code: 0x58, arg: Buffer.concat([u32(t.length), t]) }; };
const glob = (m: string, n: string): Op => ({ code: 0x63, arg: Buffer.from(`${m}\n${n}\n`, 'latin1') });

/** An int as torch writes it (BININT1, BININT2, BININT) or as LONG1 beyond 32 bits. */
function int(v: bigint): Op {
  if (v >= 0n && v < 256n) return { code: 0x4b, arg: Buffer.from([Number(v)]) };
  if (v >= 0n && v < 65536n) { const b = Buffer.alloc(2); b.writeUInt16LE(Number(v)); return { code: 0x4d, arg: b }; }
  if (v >= -(2n ** 31n) && v < 2n ** 31n) { const b = Buffer.alloc(4); b.writeInt32LE(Number(v)); return { code: 0x4a, arg: b }; }
  const bytes: number[] = [];
  let x = v;
  for (;;) {
    bytes.push(Number(x & 0xffn));
    x >>= 8n;
    if ((x === 0n && !(bytes[bytes.length - 1] & 0x80)) || (x === -1n && bytes[bytes.length - 1] & 0x80)) break;
  }
  return { code: 0x8a, arg: Buffer.from([bytes.length, ...bytes]) };
}

const INTS = [0n, 1n, 2n, 3n, 5n, 6n, 7n, 24n, 255n, 256n, 65535n, 65536n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 70n, -1n, -2n, -(2n ** 31n), -(2n ** 63n)];
const STRINGS = ['storage', 'cpu', 'cuda:0', '0', '1', '2', '99', '', '../0', 'a/b', 'base', 'w', 'a', '\u0000', 'a\nb', 'x'.repeat(300), 'ü'];
const HOSTILE_OPS: Op[] = [
  glob('os', 'system'), glob('posix', 'system'), glob('builtins', 'eval'), glob('torch', 'FloatStorage'), glob('torch', 'HalfStorage'), glob('torch', 'ComplexFloatStorage'),
  glob('torch', 'UntypedStorage'), glob('torch._utils', '_rebuild_tensor_v2'), glob('torch._utils', '_rebuild_parameter'), glob('collections', 'OrderedDict'),
  glob('torch', 'Size'), { code: 0x63, arg: Buffer.from('a b\nc\n') }, { code: 0x63, arg: Buffer.from('x') },
  ...[0x28, 0x74, 0x29, 0x85, 0x86, 0x87, 0x7d, 0x5d, 0x52, 0x62, 0x51, 0x73, 0x75, 0x61, 0x65, 0x2e, 0x4e, 0x88, 0x89, 0x30, 0x31, 0x32, 0x93, 0x94, 0x81, 0x69, 0x6f, 0x8f, 0x97]
    .map((code) => ({ code, arg: Buffer.alloc(0) })),
  { code: 0x95, arg: Buffer.alloc(8) }, { code: 0x82, arg: Buffer.from([1]) }, { code: 0x8b, arg: Buffer.from([0xff, 0xff, 0xff, 0x7f]) },
  { code: 0x68, arg: Buffer.from([0]) }, { code: 0x68, arg: Buffer.from([3]) }, { code: 0x6a, arg: u32(0xffffffff) }, { code: 0x71, arg: Buffer.from([0]) },
  { code: 0x47, arg: Buffer.from([0x7f, 0xf0, 0, 0, 0, 0, 0, 0]) }, { code: 0x80, arg: Buffer.from([9]) },
  { code: 0x58, arg: u32(0xfffffff0) }, { code: 0x58, arg: Buffer.from([2, 0, 0, 0, 0xff, 0xfe]) },
  ...STRINGS.slice(0, 6).map(str), ...INTS.slice(0, 8).map(int),
];

type PickleEdit =
  | { kind: 'delete' | 'duplicate' | 'swap'; at: number }
  | { kind: 'insert'; at: number; op: number }
  | { kind: 'int'; at: number; value: bigint }
  | { kind: 'string'; at: number; value: string }
  | { kind: 'memo'; at: number; index: number };

const pickleEdit: fc.Arbitrary<PickleEdit> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constantFrom('delete' as const, 'duplicate' as const, 'swap' as const), at: where }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), at: where, op: fc.nat(HOSTILE_OPS.length - 1) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('int' as const), at: where, value: fc.oneof(fc.constantFrom(...INTS), fc.bigInt({ min: -300n, max: 300n })) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('string' as const), at: where, value: fc.oneof(fc.constantFrom(...STRINGS), fc.string({ maxLength: 6 })) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('memo' as const), at: where, index: fc.oneof(fc.nat(60), fc.constant(0xffffffff)) }), weight: 1 },
);

const pick = <T>(xs: T[], at: number): number => Math.floor(at * xs.length);

function applyPickleEdits(pkl: Buffer, edits: PickleEdit[]): Buffer {
  const ops = splitOps(pkl);
  for (const e of edits) {
    if (ops.length === 0) break;
    const kinds = (codes: number[]) => ops.map((o, i) => (codes.includes(o.code) ? i : -1)).filter((i) => i >= 0);
    switch (e.kind) {
      case 'delete': ops.splice(pick(ops, e.at), 1); break;
      case 'duplicate': { const i = pick(ops, e.at); ops.splice(i, 0, ops[i]); break; }
      case 'swap': { const i = pick(ops, e.at); if (i + 1 < ops.length) [ops[i], ops[i + 1]] = [ops[i + 1], ops[i]]; break; }
      case 'insert': ops.splice(Math.floor(e.at * (ops.length + 1)), 0, HOSTILE_OPS[e.op]); break;
      case 'int': { const is = kinds([0x4a, 0x4b, 0x4d, 0x8a]); if (is.length) ops[is[pick(is, e.at)]] = int(e.value); break; }
      case 'string': { const is = kinds([0x58]); if (is.length) ops[is[pick(is, e.at)]] = str(e.value); break; }
      case 'memo': {
        const is = kinds([0x68, 0x6a, 0x71, 0x72]);
        if (!is.length) break;
        const i = is[pick(is, e.at)], get = ops[i].code === 0x68 || ops[i].code === 0x6a;
        ops[i] = e.index < 256 ? { code: get ? 0x68 : 0x71, arg: Buffer.from([e.index]) } : { code: get ? 0x6a : 0x72, arg: u32(e.index) };
        break;
      }
    }
  }
  return joinOps(ops);
}

// ------------------------------------------------------------------------------------------ archive

type ZipEdit =
  | { kind: 'drop' | 'repeat' | 'swap' | 'crc'; at: number }
  | { kind: 'rename'; at: number; name: string }
  | { kind: 'method'; at: number; method: number }
  | { kind: 'size'; at: number; by: number }
  | { kind: 'cut'; at: number; keep: number };

const NAMES = ['archive/data.pkl', 'other/data.pkl', 'data.pkl', 'archive/data/0', 'archive/data/1', 'archive/byteorder', '', '../x', 'a/b/data.pkl', 'x\u0000'];
const zipEdit: fc.Arbitrary<ZipEdit> = fc.oneof(
  fc.record({ kind: fc.constantFrom('drop' as const, 'repeat' as const, 'swap' as const, 'crc' as const), at: where }),
  fc.record({ kind: fc.constant('rename' as const), at: where, name: fc.constantFrom(...NAMES) }),
  fc.record({ kind: fc.constant('method' as const), at: where, method: fc.constantFrom(8, 12, 93, 1) }),
  fc.record({ kind: fc.constant('size' as const), at: where, by: fc.integer({ min: -3, max: 3 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: where, keep: where }),
);

function applyZipEdits(entries: ZipInput[], edits: ZipEdit[]): ZipInput[] {
  const out = entries.map((e) => ({ ...e }));
  const prefix = entries.find((e) => e.name.endsWith('/data.pkl'))?.name.split('/')[0] ?? 'archive';
  for (const e of edits) {
    if (out.length === 0) break;
    const i = pick(out, e.at);
    switch (e.kind) {
      case 'drop': out.splice(i, 1); break;
      case 'repeat': out.splice(i, 0, { ...out[i] }); break;
      case 'swap': if (i + 1 < out.length) [out[i], out[i + 1]] = [out[i + 1], out[i]]; break;
      case 'crc': out[i].crc = ((out[i].crc ?? 0) ^ 0x5a5a) >>> 0; break;
      case 'rename': out[i].name = e.name.replace(/^archive\//, `${prefix}/`); break;
      case 'method': out[i].method = e.method; break;
      case 'size': out[i].size = Math.max(0, out[i].data.length + e.by); break;
      case 'cut': out[i].data = out[i].data.subarray(0, Math.floor(e.keep * out[i].data.length)); break;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------- inputs

export interface TorchBinInput {
  seed: number;
  pickle: PickleEdit[];
  zip: ZipEdit[];
  layout: ZipLayout;
  bytes: ByteEdit[] | null;
}

export const torchBinInput: fc.Arbitrary<TorchBinInput> = fc.record({
  seed: fc.nat(SEED_FILES.length - 1),
  pickle: fc.oneof({ arbitrary: fc.constant([] as PickleEdit[]), weight: 1 }, { arbitrary: fc.array(pickleEdit, { minLength: 1, maxLength: 3 }), weight: 3 }),
  zip: fc.oneof({ arbitrary: fc.constant([] as ZipEdit[]), weight: 3 }, { arbitrary: fc.array(zipEdit, { minLength: 1, maxLength: 2 }), weight: 1 }),
  layout: fc.record({ zip64: fc.boolean(), descriptor: fc.boolean(), align: fc.constantFrom(undefined, 64), comment: fc.constantFrom(undefined, '', 'PK\u0005\u0006') }),
  bytes: oneIn(5, byteEdits),
});

function archive(input: TorchBinInput): Buffer {
  const entries = seeds()[input.seed].map((e) => ({ ...e }));
  const pkl = entries.find((e) => e.name.endsWith('/data.pkl'));
  // a checksum that matches the edited pickle: the edits reach the unpickler, not only the checksum test
  if (pkl && input.pickle.length) pkl.data = applyPickleEdits(Buffer.from(pkl.data), input.pickle);
  const file = writeZip(applyZipEdits(entries, input.zip), input.layout);
  return input.bytes ? Buffer.from(applyByteEdits(file, input.bytes)) : file;
}

// ------------------------------------------------------------------------------------------ property

type Reading = { ok: true; tensors: Map<string, { dtype: string; shape: number[]; bytes: Buffer }> } | { ok: false; message: string };

/** Opens and reads every tensor; refusals are PeregrineErrors (anything else fails the property), reads stay within their claims. */
function read(path: string, size: number): Reading {
  const r = syncOutcome(() => TorchBinFile.open(path));
  noteOutcome('open', r);
  if (!r.ok) return { ok: false, message: r.error.message.replace(path, '<file>') };
  const f = r.value;
  try {
    const tensors = new Map<string, { dtype: string; shape: number[]; bytes: Buffer }>();
    for (const [name, t] of f.tensors) {
      if (!(t.begin >= 0 && t.begin <= t.end && t.end <= size) && t.end > t.begin) fail(`tensor ${JSON.stringify(name)} claims bytes ${t.begin} to ${t.end} of a ${size}-byte file`);
      const b = syncOutcome(() => f.readBytes(name));
      noteOutcome('read', b);
      if (!b.ok) return { ok: false, message: b.error.message.replace(path, '<file>') };
      if (b.value.length !== t.end - t.begin) fail(`tensor ${JSON.stringify(name)}: read ${b.value.length} bytes, its info claims ${t.end - t.begin}`);
      if (b.value.length !== t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype]) {
        fail(`tensor ${JSON.stringify(name)}: ${b.value.length} bytes for shape [${t.shape}] x ${t.dtype}`);
      }
      tensors.set(name, { dtype: t.dtype, shape: t.shape, bytes: Buffer.from(b.value) });
    }
    return { ok: true, tensors };
  } finally {
    f.close();
  }
}

const originals = new Map<number, Reading>();

export async function checkTorchBin(input: TorchBinInput, dir: string): Promise<void> {
  const bytes = archive(input);
  writeFiles(dir, new Map([['pytorch_model.bin', bytes]]));
  await noFdLeak(async () => {
    const got = read(join(dir, 'pytorch_model.bin'), bytes.length);
    if (input.pickle.length || input.zip.length || input.bytes) return;
    // only the zip layout changed: the same reading as the archive torch.save wrote
    if (!originals.has(input.seed)) originals.set(input.seed, read(join(FIXTURES, 'torch-bin', SEED_FILES[input.seed]), Infinity));
    const want = originals.get(input.seed)!;
    if (got.ok !== want.ok) fail(`read as ${got.ok ? 'valid' : `invalid (${got.message})`} in layout ${JSON.stringify(input.layout)}, the original as ${want.ok ? 'valid' : `invalid (${want.message})`}`);
    if (!got.ok || !want.ok) return;
    if ([...got.tensors.keys()].join() !== [...want.tensors.keys()].join()) fail('another set of tensors than the original');
    for (const [name, w] of want.tensors) {
      const g = got.tensors.get(name)!;
      if (g.dtype !== w.dtype || g.shape.join() !== w.shape.join() || !g.bytes.equals(w.bytes)) fail(`tensor ${JSON.stringify(name)} differs from the original's`);
    }
  });
}

export const torchBinTarget: Target<TorchBinInput> = {
  name: 'torch-bin',
  quick: 150,
  arbitrary: torchBinInput,
  check: (input) => inCaseDir((dir) => checkTorchBin(input, dir)),
};
