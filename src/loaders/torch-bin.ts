// PyTorch checkpoints as torch.save writes them (pytorch_model.bin): a zip archive whose <archive>/data.pkl pickles
// the state dict, each tensor a view (storage offset, size, stride) of a storage stored as the entry
// <archive>/data/<key>. data.pkl is read by a restricted unpickler (pickle.ts) under the rules below, which know the
// few names a state dict needs and build plain data from them; nothing in the file is run. Only the archive's
// directory and data.pkl are read at open; each tensor is read from its storage when asked for, copied into
// row-major order when its view is strided.
import { closeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { fail, show } from '../errors.js';
import { openAndParse } from './open-file.js';
import { describe, PyDict, PyGlobal, PyTuple, unpickle, type PickleRules, type PyValue } from './pickle.js';
import type { TensorInfo } from './safetensors.js';
import { readAt, readZipDirectory, type ZipEntry } from './zip.js';

/** torch.<X>Storage -> the dtype (safetensors' names) and bytes per element. */
const STORAGES: Record<string, { dtype: string; bytes: number }> = {
  FloatStorage: { dtype: 'F32', bytes: 4 }, HalfStorage: { dtype: 'F16', bytes: 2 }, BFloat16Storage: { dtype: 'BF16', bytes: 2 },
  DoubleStorage: { dtype: 'F64', bytes: 8 }, LongStorage: { dtype: 'I64', bytes: 8 }, IntStorage: { dtype: 'I32', bytes: 4 },
  ShortStorage: { dtype: 'I16', bytes: 2 }, CharStorage: { dtype: 'I8', bytes: 1 }, ByteStorage: { dtype: 'U8', bytes: 1 },
  BoolStorage: { dtype: 'BOOL', bytes: 1 },
};
/** the callables REDUCE may name: what they build is data, made here */
const REBUILD = new Set(['torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_tensor', 'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state', 'collections.OrderedDict']);
const MAX_PICKLE = 256 * 1024 * 1024;
const MAX_DIMS = 64;

class Storage {
  constructor(readonly key: string, readonly type: string, readonly dtype: string, readonly itemBytes: number, readonly numel: number) {}
}

class TensorView {
  constructor(readonly storage: Storage, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}

/** How one tensor lies in the file: its storage's entry, and the view's offset and strides (in elements). */
interface Placement {
  entry: ZipEntry;
  view: TensorView;
  numel: number;
  contiguous: boolean;
}

const isCount = (v: PyValue): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The rules data.pkl is read under: a state dict of tensors, and nothing that runs. */
class StateDictRules implements PickleRules {
  readonly storages = new Map<string, Storage>();

  constructor(private readonly bad: (what: string) => never) {}

  global(module: string, name: string, at: number): PyGlobal {
    const full = `${module}.${name}`;
    if (REBUILD.has(full) || (module === 'torch' && Object.hasOwn(STORAGES, name))) return new PyGlobal(module, name);
    const why = module === 'torch' && name.endsWith('Storage')
      ? `a storage type Peregrine does not read (it reads ${Object.keys(STORAGES).join(', ')})`
      : 'not one of the tensor and storage types a state dict needs, and Peregrine never imports or runs anything a checkpoint names: use weights from a source you trust, as safetensors';
    return this.bad(`data.pkl imports ${full} (GLOBAL at byte ${at}), ${why}`);
  }

  reduce(fn: PyValue, args: PyTuple, at: number): PyValue {
    const a = args.items;
    const name = fn instanceof PyGlobal ? String(fn) : '';
    const arity = (lo: number, hi = lo) => {
      if (a.length < lo || a.length > hi) this.bad(`data.pkl calls ${name} with ${a.length} arguments (REDUCE at byte ${at}), not ${lo === hi ? lo : `${lo} to ${hi}`}`);
    };
    switch (name) {
      case 'collections.OrderedDict':
        arity(0);
        return new PyDict();
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor': {
        if (name.endsWith('v2')) {
          arity(6, 7);
          if (typeof a[4] !== 'boolean') this.bad(`data.pkl: ${name} at byte ${at} has ${describe(a[4])} for requires_grad, not a bool`);
          if (!(a[5] instanceof PyDict) || a[5].map.size) this.bad(`data.pkl: ${name} at byte ${at} has ${describe(a[5])} for backward hooks, not an empty dict`);
          if (a.length === 7 && a[6] !== null && !(a[6] instanceof PyDict)) this.bad(`data.pkl: ${name} at byte ${at} has ${describe(a[6])} for metadata`);
        } else {
          arity(4);
        }
        return this.view(a[0], a[1], a[2], a[3], at);
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        arity(name.endsWith('state') ? 4 : 3);
        if (!(a[0] instanceof TensorView)) this.bad(`data.pkl: ${name} at byte ${at} wraps ${describe(a[0])}, not a tensor`);
        return a[0];
      default:
        return this.bad(`data.pkl calls ${fn instanceof PyGlobal ? String(fn) : describe(fn)} (REDUCE at byte ${at}), which builds no tensor or dict; Peregrine calls nothing a checkpoint names`);
    }
  }

  private view(storage: PyValue, offset: PyValue, size: PyValue, stride: PyValue, at: number): TensorView {
    const where = `the tensor built at byte ${at}`;
    if (!(storage instanceof Storage)) this.bad(`data.pkl: ${where} views ${describe(storage)}, not a storage`);
    if (!isCount(offset)) this.bad(`data.pkl: ${where} has storage offset ${describe(offset)}, not a count`);
    const dims = (v: PyValue, what: string): number[] => {
      if (!(v instanceof PyTuple) || v.items.length > MAX_DIMS || !v.items.every(isCount)) this.bad(`data.pkl: ${where} has ${describe(v)} for its ${what}, not a tuple of at most ${MAX_DIMS} counts`);
      return v.items as number[];
    };
    const sz = dims(size, 'size'), st = dims(stride, 'stride');
    if (sz.length !== st.length) this.bad(`data.pkl: ${where} has ${sz.length} sizes but ${st.length} strides`);
    return new TensorView(storage, offset, sz, st);
  }

  build(obj: PyValue, state: PyValue, at: number): void {
    // an OrderedDict's attributes (a state dict's _metadata: module versions) are not needed
    if (obj instanceof PyDict && (state === null || state instanceof PyDict)) return;
    this.bad(`data.pkl sets ${describe(state)} as the state of ${describe(obj)} (BUILD at byte ${at}); a state dict has no such objects`);
  }

  persistentLoad(pid: PyValue, at: number): PyValue {
    const p = pid instanceof PyTuple ? pid.items : [];
    const [tag, type, key, location, numel] = p;
    if (p.length !== 5 || tag !== 'storage') this.bad(`data.pkl refers to ${describe(pid)} (BINPERSID at byte ${at}), not a ('storage', type, key, location, size) record`);
    if (!(type instanceof PyGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGES, type.name)) this.bad(`data.pkl: the storage at byte ${at} has type ${describe(type)}, not a torch storage type`);
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key)) this.bad(`data.pkl: the storage at byte ${at} has key ${describe(key)}, not a short name`);
    if (typeof location !== 'string') this.bad(`data.pkl: storage ${key} has location ${describe(location)}, not a string`);
    if (!isCount(numel)) this.bad(`data.pkl: storage ${key} has size ${describe(numel)}, not a count`);
    const { dtype, bytes } = STORAGES[type.name];
    const known = this.storages.get(key);
    if (known) {
      if (known.type !== type.name || known.numel !== numel) this.bad(`data.pkl declares storage ${key} twice, as ${known.type} of ${known.numel} and as ${type.name} of ${numel}`);
      return known;
    }
    const s = new Storage(key, type.name, dtype, bytes, numel);
    this.storages.set(key, s);
    return s;
  }
}

export class TorchBinFile {
  private constructor(readonly path: string, private fd: number, readonly tensors: Map<string, TensorInfo>, private readonly placed: Map<string, Placement>) {}

  static open(path: string): TorchBinFile {
    return openAndParse(path, 'PyTorch checkpoint', (fd, size) => {
      const { tensors, placed } = readArchive(fd, size, path);
      return new TorchBinFile(path, fd, tensors, placed);
    });
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) fail('weights-mismatch', `tensor ${name} is not in ${this.path}`);
    return t;
  }

  /** The tensor's bytes in row-major order, in a fresh (aligned) buffer. */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    const p = this.placed.get(name)!;
    const bad = (what: string): never => fail('bad-pytorch', `${this.path} is not a valid PyTorch checkpoint: ${what}`);
    const item = p.view.storage.itemBytes;
    if (p.numel === 0) return new Uint8Array(0);
    if (p.contiguous) {
      const whole = t.begin === p.entry.begin && t.end === p.entry.end;
      const bytes = readInto(this.fd, t.begin, t.end - t.begin, bad, `tensor ${name}`);
      if (whole && crc32(bytes) >>> 0 !== p.entry.crc) bad(`storage ${p.entry.name} (tensor ${name}) does not match its checksum; the file is corrupt, download it again`);
      return bytes;
    }
    // a strided view: read the span it touches, then gather its elements in row-major order
    const { size, stride, offset } = p.view;
    const last = size.reduce((a, d, i) => a + (d - 1) * stride[i], offset);
    const span = readInto(this.fd, p.entry.begin + offset * item, (last - offset + 1) * item, bad, `tensor ${name}`);
    const out = new Uint8Array(new ArrayBuffer(p.numel * item));
    const idx = new Array<number>(size.length).fill(0);
    const inner = size.length - 1;
    for (let o = 0, src = 0; o < out.length;) {
      if (stride[inner] === 1) { // rows of a sliced matrix: one copy a row
        out.set(span.subarray(src * item, (src + size[inner]) * item), o);
        o += size[inner] * item;
      } else {
        for (let j = 0; j < size[inner]; j++, o += item) {
          const s = (src + j * stride[inner]) * item;
          out.set(span.subarray(s, s + item), o);
        }
      }
      // the next row: carry through the outer dimensions
      let d = inner - 1;
      for (; d >= 0; d--) {
        src += stride[d];
        if (++idx[d] < size[d]) break;
        src -= stride[d] * size[d];
        idx[d] = 0;
      }
      if (d < 0) break;
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

function readInto(fd: number, position: number, length: number, bad: (what: string) => never, what: string): Uint8Array {
  const buf = readAt(fd, position, length, bad, what);
  // a fresh buffer of its own: Buffer.alloc of small sizes shares a pool, which breaks typed views of F32 data
  const out = new Uint8Array(new ArrayBuffer(length));
  out.set(buf);
  return out;
}

function readArchive(fd: number, fileSize: number, path: string): { tensors: Map<string, TensorInfo>; placed: Map<string, Placement> } {
  const bad: (what: string) => never = (what) => fail('bad-pytorch', `${path} is not a valid PyTorch checkpoint: ${what}`);
  const head = readAt(fd, 0, Math.min(fileSize, 4), bad, 'the first bytes');
  if (head[0] === 0x80 && fileSize > 2) {
    bad('it is in the legacy torch.save format (PyTorch before 1.6, a bare pickle); load it and save it again with a current torch.save, or convert it to safetensors');
  }
  if (head.length < 4 || head.readUInt32LE(0) !== 0x04034b50) bad('it does not start as a zip archive ("PK\\x03\\x04"), as torch.save writes since PyTorch 1.6');
  const entries = readZipDirectory(fd, fileSize, bad);
  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) bad(pkls.length ? `it has ${pkls.length} data.pkl entries (${pkls.slice(0, 3).map((n) => show(n, 40)).join(', ')}), not one` : 'it has no <archive>/data.pkl entry; it is a zip archive but not one torch.save wrote');
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order) {
    const text = readAt(fd, order.begin, Math.min(order.end - order.begin, 16), bad, 'byteorder').toString('latin1');
    if (text !== 'little') bad(`its byteorder entry says ${show(text)}; Peregrine reads little-endian checkpoints`);
  }
  const pkl = entries.get(pkls[0])!;
  if (pkl.end - pkl.begin > MAX_PICKLE) bad(`data.pkl is ${pkl.end - pkl.begin} bytes (limit ${MAX_PICKLE})`);
  const pickle = readAt(fd, pkl.begin, pkl.end - pkl.begin, bad, 'data.pkl');
  if (crc32(pickle) >>> 0 !== pkl.crc) bad('data.pkl does not match its checksum; the file is corrupt, download it again');
  const rules = new StateDictRules(bad);
  const root = unpickle(pickle, rules, (what) => bad(`data.pkl: ${what}`));
  if (!(root instanceof PyDict)) bad(`data.pkl holds ${describe(root)}, not a state dict (a dict of tensors)`);

  const tensors = new Map<string, TensorInfo>();
  const placed = new Map<string, Placement>();
  const checked = new Map<Storage, ZipEntry>();
  for (const [name, value] of root.map) {
    if (typeof name !== 'string') bad(`the state dict has a key ${show(name)} that is not a string`);
    if (!(value instanceof TensorView)) {
      bad(`the state dict maps ${show(name, 80)} to ${describe(value)}, not a tensor${value instanceof PyDict ? ' (a training checkpoint: save model.state_dict() alone)' : ''}`);
    }
    const s = value.storage;
    let entry = checked.get(s);
    if (!entry) {
      entry = entries.get(`${prefix}data/${s.key}`);
      if (!entry) bad(`storage ${s.key} (tensor ${show(name, 80)}) has no entry ${prefix}data/${s.key}`);
      const want = s.numel * s.itemBytes;
      if (entry.end - entry.begin !== want) bad(`storage ${s.key} holds ${s.numel} x ${s.type} = ${want} bytes but its entry has ${entry.end - entry.begin}`);
      checked.set(s, entry);
    }
    const { offset, size, stride } = value;
    // a zero dimension first: a product of huge dimensions and a zero is NaN
    const numel = size.includes(0) ? 0 : size.reduce((a, d) => a * d, 1);
    // more elements than the storage holds could only come from overlapping (expanded) views; a state dict has none
    if (numel > s.numel) bad(`tensor ${show(name, 80)} of shape [${size}] has more elements than its storage ${s.key} (${s.numel})`);
    let contiguous = true;
    if (numel > 0) {
      let last = offset, expect = 1;
      for (let i = size.length - 1; i >= 0; i--) {
        if (size[i] > 1 && stride[i] !== expect) contiguous = false;
        expect *= size[i];
        last += (size[i] - 1) * stride[i];
      }
      if (!Number.isSafeInteger(last) || last >= s.numel) {
        bad(`tensor ${show(name, 80)} (offset ${offset}, shape [${size}], strides [${stride}]) reaches element ${last} of storage ${s.key}, which has ${s.numel}`);
      }
    } else if (offset > s.numel) {
      bad(`tensor ${show(name, 80)} starts at element ${offset} of storage ${s.key}, which has ${s.numel}`);
    }
    const begin = entry.begin + offset * s.itemBytes;
    // for a strided view, the range is where its first element is and how many bytes it takes once copied
    tensors.set(name, { name, dtype: s.dtype, shape: size, begin, end: begin + numel * s.itemBytes });
    placed.set(name, { entry, view: value, numel, contiguous });
  }
  return { tensors, placed };
}
