// A restricted unpickler: the opcodes of pickle protocol 2 that torch.save writes for a state dict, over values
// that are plain data (None, booleans, ints, floats, strings, tuples, lists, dicts). GLOBAL, REDUCE, BUILD and
// persistent ids are answered by the caller's rules, which build data from an allowlist; every other opcode is
// refused by name. Nothing in the file is ever looked up or called: no import, no attribute, no function.
import { show } from '../errors.js';

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export class PyList {
  readonly items: PyValue[] = [];
}

/** A dict (or OrderedDict: pickles keep insertion order either way); keys are plain values. */
export class PyDict {
  readonly map = new Map<string | number | bigint | boolean | null, PyValue>();
}

/** A name GLOBAL imported, as a value: the rules allowed it, and only the rules give it meaning. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Anything the rules build (storages, tensors) is an object of the rules' own classes. */
export type PyValue = null | boolean | number | bigint | string | PyTuple | PyList | PyDict | PyGlobal | object;

export interface PickleRules {
  /** The value GLOBAL `module name` pushes; throws for a name that is not allowed. */
  global(module: string, name: string, at: number): PyGlobal;
  /** REDUCE: `callable(*args)`; throws for anything it does not build. */
  reduce(callable: PyValue, args: PyTuple, at: number): PyValue;
  /** BUILD: sets `state` on `obj`; throws for anything it does not accept. */
  build(obj: PyValue, state: PyValue, at: number): void;
  /** BINPERSID: the object a persistent id stands for. */
  persistentLoad(pid: PyValue, at: number): PyValue;
}

/** Every opcode by its byte, so that a refusal names it. */
const OPCODES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT', 0x4b: 'BININT1',
  0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT',
  0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT', 0x80: 'PROTO',
  0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE',
  0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** A short description of a value for messages (never walks into it: a hostile pickle can make cycles). */
export function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' || typeof v === 'bigint') return `the int ${v}`;
  if (typeof v === 'string') return `the string ${show(v, 40)}`;
  if (v instanceof PyTuple) return `a tuple of ${v.items.length}`;
  if (v instanceof PyList) return 'a list';
  if (v instanceof PyDict) return 'a dict';
  if (v instanceof PyGlobal) return String(v);
  return `a ${v.constructor?.name ?? 'value'}`;
}

const MAX_LINE = 256;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Runs the pickle `b` to its STOP under `rules`; `bad` throws the caller's error for a malformed or refused pickle. */
export function unpickle(b: Uint8Array, rules: PickleRules, bad: (what: string) => never): PyValue {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let stack: PyValue[] = [];
  const marks: PyValue[][] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let op = 0; // where the current opcode starts, for messages

  const need = (n: number, what: string): number => {
    if (pos + n > b.length) bad(`${what} at byte ${op} runs past the end of data.pkl`);
    const at = pos;
    pos += n;
    return at;
  };
  const pop = (what: string): PyValue => {
    if (stack.length === 0) bad(`${what} at byte ${op} finds the stack empty`);
    return stack.pop()!;
  };
  const popMark = (what: string): PyValue[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) bad(`${what} at byte ${op} has no MARK before it`);
    stack = prev;
    return items;
  };
  const line = (what: string): string => {
    const end = b.indexOf(0x0a, pos);
    if (end < 0 || end - pos > MAX_LINE) bad(`${what} at byte ${op} has no line end within ${MAX_LINE} bytes`);
    const s = Buffer.from(b.subarray(pos, end)).toString('latin1');
    if (!/^[A-Za-z0-9_.]+$/.test(s)) bad(`${what} at byte ${op} names ${show(s, 60)}, which is no Python name`);
    pos = end + 1;
    return s;
  };
  const text = (n: number, what: string): string => {
    const at = need(n, what);
    try {
      return utf8.decode(b.subarray(at, at + n));
    } catch {
      return bad(`${what} at byte ${op} is not valid UTF-8`);
    }
  };
  const get = (key: number): PyValue => {
    if (!memo.has(key)) bad(`${OPCODES[b[op]]} at byte ${op} reads memo ${key}, which nothing stored`);
    return memo.get(key)!;
  };
  const setItem = (d: PyValue, k: PyValue, v: PyValue): void => {
    if (!(d instanceof PyDict)) bad(`SETITEM at byte ${op} sets an item on ${describe(d)}, not a dict`);
    if (k !== null && typeof k === 'object') bad(`SETITEM at byte ${op} uses ${describe(k)} as a dict key (only strings and numbers are read)`);
    if (d.map.has(k)) bad(`the key ${show(k, 80)} is set twice in one dict (byte ${op})`);
    d.map.set(k, v);
  };

  for (;;) {
    op = pos;
    const code = b[need(1, 'an opcode')];
    switch (code) {
      case 0x80: { // PROTO
        const v = b[need(1, 'PROTO')];
        if (v < 2 || v > 5) bad(`it is pickle protocol ${v}; torch.save writes protocol 2`);
        break;
      }
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) bad(`STOP at byte ${op} leaves ${stack.length} values and ${marks.length} marks, not one value`);
        return stack[0];
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(view.getInt32(need(4, 'BININT'), true)); break;
      case 0x4b: stack.push(b[need(1, 'BININT1')]); break;
      case 0x4d: stack.push(view.getUint16(need(2, 'BININT2'), true)); break;
      case 0x8a: { // LONG1: n bytes of little-endian two's complement
        const n = b[need(1, 'LONG1')];
        const at = need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]);
        if (n > 0 && b[at + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: stack.push(view.getFloat64(need(8, 'BINFLOAT'), false)); break;
      case 0x58: stack.push(text(view.getUint32(need(4, 'BINUNICODE'), true), 'BINUNICODE')); break;
      case 0x7d: stack.push(new PyDict()); break; // EMPTY_DICT
      case 0x5d: stack.push(new PyList()); break; // EMPTY_LIST
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x85: stack.push(new PyTuple([pop('TUPLE1')])); break;
      case 0x86: { const y = pop('TUPLE2'), x = pop('TUPLE2'); stack.push(new PyTuple([x, y])); break; }
      case 0x87: { const z = pop('TUPLE3'), y = pop('TUPLE3'), x = pop('TUPLE3'); stack.push(new PyTuple([x, y, z])); break; }
      case 0x74: { const items = popMark('TUPLE'); stack.push(new PyTuple(items)); break; }
      case 0x71: memo.set(b[need(1, 'BINPUT')], stack.length ? stack[stack.length - 1] : bad(`BINPUT at byte ${op} finds the stack empty`)); break;
      case 0x72: memo.set(view.getUint32(need(4, 'LONG_BINPUT'), true), stack.length ? stack[stack.length - 1] : bad(`LONG_BINPUT at byte ${op} finds the stack empty`)); break;
      case 0x68: stack.push(get(b[need(1, 'BINGET')])); break;
      case 0x6a: stack.push(get(view.getUint32(need(4, 'LONG_BINGET'), true))); break;
      case 0x61: { // APPEND
        const v = pop('APPEND'), l = pop('APPEND');
        if (!(l instanceof PyList)) bad(`APPEND at byte ${op} appends to ${describe(l)}, not a list`);
        l.items.push(v);
        stack.push(l);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark('APPENDS');
        const l = pop('APPENDS');
        if (!(l instanceof PyList)) bad(`APPENDS at byte ${op} appends to ${describe(l)}, not a list`);
        l.items.push(...items);
        stack.push(l);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop('SETITEM'), k = pop('SETITEM'), d = pop('SETITEM');
        setItem(d, k, v);
        stack.push(d);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark('SETITEMS');
        if (items.length % 2) bad(`SETITEMS at byte ${op} has an odd number (${items.length}) of keys and values`);
        const d = pop('SETITEMS');
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x63: { // GLOBAL
        const module = line('GLOBAL');
        stack.push(rules.global(module, line('GLOBAL'), op));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop('REDUCE'), fn = pop('REDUCE');
        if (!(args instanceof PyTuple)) bad(`REDUCE at byte ${op} has ${describe(args)} for arguments, not a tuple`);
        stack.push(rules.reduce(fn, args, op));
        break;
      }
      case 0x62: { // BUILD
        const state = pop('BUILD');
        const obj = pop('BUILD');
        rules.build(obj, state, op);
        stack.push(obj);
        break;
      }
      case 0x51: stack.push(rules.persistentLoad(pop('BINPERSID'), op)); break;
      default: {
        const name = OPCODES[code];
        bad(name
          ? `opcode ${name} at byte ${op} is not one torch.save writes for a state dict; Peregrine reads only those and runs nothing, so re-save the weights with torch.save(model.state_dict()) or convert them to safetensors`
          : `byte ${op} holds 0x${code.toString(16).padStart(2, '0')}, which is no pickle opcode (a corrupt file)`);
      }
    }
  }
}
