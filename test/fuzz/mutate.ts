// Mutations for the fuzz targets: byte-level edits of whole files (truncations, bit flips, interesting
// integers, inserted and deleted runs) and structural edits of JSON documents (a value at a random path
// replaced by a hostile one: wrong types, huge and negative numbers, hostile strings).
import fc from 'fast-check';

// ---------------------------------------------------------------------------------------------- bytes

export type ByteEdit =
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'int'; at: number; width: 1 | 2 | 4 | 8; value: bigint }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'append'; bytes: Uint8Array };

/**
 * A position as a fraction of the length in [0, 1), so that one edit list applies to a file of any size;
 * uniform (fast-check's doubles crowd towards 0, which would put every edit at the start).
 */
export const where = fc.noBias(fc.integer({ min: 0, max: 2 ** 32 - 1 })).map((x) => x / 2 ** 32, (v) => Math.floor((v as number) * 2 ** 32));

const INTERESTING_INTS = [
  0n, 1n, 7n, 8n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n,
  0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n,
];

export const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: where }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), at: where, bit: fc.integer({ min: 0, max: 7 }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('set' as const), at: where, byte: fc.integer({ min: 0, max: 255 }) }), weight: 2 },
  {
    arbitrary: fc.record({
      kind: fc.constant('int' as const), at: where, width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
      value: fc.oneof(fc.constantFrom(...INTERESTING_INTS), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), at: where, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), at: where, length: fc.integer({ min: 1, max: 64 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }), weight: 1 },
);

export const byteEdits = fc.array(byteEdit, { minLength: 1, maxLength: 4 });

/**
 * Applies `edits` to a copy of `src`. `focus` (bytes) makes positions fall in the first `focus` bytes, where
 * a file's header is; 0 spreads them over the whole file.
 */
export function applyByteEdits(src: Uint8Array, edits: ByteEdit[], focus = 0): Uint8Array {
  let b = Buffer.from(src);
  const pos = (at: number, len: number) => Math.floor(at * (focus > 0 ? Math.min(focus, len) : len));
  for (const e of edits) {
    switch (e.kind) {
      case 'truncate':
        b = b.subarray(0, pos(e.at, b.length + 1));
        break;
      case 'flip':
        if (b.length) b[pos(e.at, b.length)] ^= 1 << e.bit;
        break;
      case 'set':
        if (b.length) b[pos(e.at, b.length)] = e.byte;
        break;
      case 'int': {
        const p = pos(e.at, Math.max(0, b.length - e.width + 1));
        if (p + e.width > b.length) break;
        const v = e.value & ((1n << BigInt(8 * e.width)) - 1n);
        for (let i = 0; i < e.width; i++) b[p + i] = Number((v >> BigInt(8 * i)) & 0xffn);
        break;
      }
      case 'insert': {
        const p = pos(e.at, b.length + 1);
        b = Buffer.concat([b.subarray(0, p), e.bytes, b.subarray(p)]);
        break;
      }
      case 'delete': {
        const p = pos(e.at, b.length + 1);
        b = Buffer.concat([b.subarray(0, p), b.subarray(p + e.length)]);
        break;
      }
      case 'append':
        b = Buffer.concat([b, e.bytes]);
        break;
    }
  }
  return b;
}

// ----------------------------------------------------------------------------------------------- JSON

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** JSON text written verbatim where a value goes: numbers JSON.stringify cannot write (1e999, -0), duplicate keys, deep nesting. */
export class Raw {
  constructor(readonly text: string) {}
}
export type Hostile = Json | Raw | Hostile[] | { [key: string]: Hostile };

/** JSON text of a value that may hold Raw pieces. */
export function stringify(v: Hostile | undefined): string {
  if (v instanceof Raw) return v.text;
  if (v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(stringify).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${stringify(x)}`).join(',')}}`;
  return JSON.stringify(v);
}

const HUGE_AND_NEGATIVE = [
  0, 1, -1, 2, 3, 7, 8, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 2 ** 53,
  2 ** 53 + 2, 2 ** 63, 2 ** 64, 1e21, 1e30, 1e308, -1e308, -(2 ** 31), -(2 ** 53), 0.5, 1.5, -0.5, 1e-300, 5e-324,
];

export const hostileNumber: fc.Arbitrary<Hostile> = fc.oneof(
  fc.constantFrom(...HUGE_AND_NEGATIVE),
  fc.constantFrom(new Raw('1e999'), new Raw('-1e999'), new Raw('-0'), new Raw('1.0'), new Raw('1E2'), new Raw('0.1e1')),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

export const hostileString: fc.Arbitrary<Hostile> = fc.oneof(
  fc.constantFrom(
    '', ' ', 'a', '8', '-1', '1e999', 'null', 'true', '.', '..', '../x', '../../etc/passwd', '/etc/passwd', '/', '\\', 'C:\\x',
    'a\u0000b', '\u0000', '\r', '\n', 'a\r\nb', '\u2028', '\u001b[31m', '\ud800', '__proto__', 'constructor', 'x'.repeat(300),
    'x'.repeat(5000), '<|endoftext|>', '[CLS]', 'gelu', 'gelu_new', 'float16', '{{ 1/0 }}', '{% for x in y %}',
  ),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
);

export const hostileValue: fc.Arbitrary<Hostile> = fc.oneof(
  { arbitrary: hostileNumber, weight: 4 },
  { arbitrary: hostileString, weight: 3 },
  { arbitrary: fc.constantFrom<Hostile>(null, true, false, [], {}, [null], [1, 2, 3], ['a'], { content: 5 }, { '': null }), weight: 2 },
  {
    arbitrary: fc.constantFrom(
      new Raw('{"__proto__":{"polluted":1}}'), new Raw('{"a":1,"a":"x"}'), new Raw('['.repeat(20000) + ']'.repeat(20000)),
      new Raw('{"x":'.repeat(20000) + '1' + '}'.repeat(20000)),
    ),
    weight: 1,
  },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Hostile>, weight: 1 },
);

export type Path = (string | number)[];

/** Paths to the values in `v`; a container with more than `wide` children contributes a sample of them (first, last, and spread). */
export function pathsOf(v: Json, wide = 48, prefix: Path = [], out: Path[] = []): Path[] {
  out.push(prefix);
  if (prefix.length >= 32) return out; // a deeply nested value (from an earlier edit) is one value
  const children: [string | number, Json][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : v !== null && typeof v === 'object' ? Object.entries(v) : [];
  const step = Math.max(1, Math.ceil(children.length / wide));
  children.forEach(([k, x], i) => {
    if (i % step === 0 || i === children.length - 1) pathsOf(x, wide, [...prefix, k], out);
  });
  return out;
}

export type JsonEdit =
  | { op: 'replace'; at: number; value: Hostile }
  | { op: 'delete'; at: number }
  | { op: 'add'; at: number; key: string; value: Hostile }
  | { op: 'wrap'; at: number; how: 'array' | 'object' | 'string' }
  | { op: 'copy'; at: number; from: number };

/** Edits of a document; `keys` are field names worth adding (those the reader looks for). */
export function jsonEdits(keys: string[], values: fc.Arbitrary<Hostile> = hostileValue): fc.Arbitrary<JsonEdit[]> {
  const edit: fc.Arbitrary<JsonEdit> = fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('replace' as const), at: where, value: values }), weight: 6 },
    { arbitrary: fc.record({ op: fc.constant('delete' as const), at: where }), weight: 2 },
    {
      arbitrary: fc.record({ op: fc.constant('add' as const), at: where, key: fc.oneof(...(keys.length ? [fc.constantFrom(...keys)] : []), fc.string({ maxLength: 8 }), fc.constantFrom('', '__proto__', 'a\rb', 'a\nb', '\u2028', '\u0000')), value: values }),
      weight: 2,
    },
    { arbitrary: fc.record({ op: fc.constant('wrap' as const), at: where, how: fc.constantFrom('array' as const, 'object' as const, 'string' as const) }), weight: 1 },
    { arbitrary: fc.record({ op: fc.constant('copy' as const), at: where, from: where }), weight: 1 },
  );
  return fc.array(edit, { minLength: 1, maxLength: 3 });
}

function clone(v: Hostile): Hostile {
  if (v instanceof Raw || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(clone);
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]));
}

/** obj[key] = v, also for a key named __proto__ (an own property, as JSON.parse makes it). */
function put(obj: Record<string | number, Hostile>, key: string | number, v: Hostile): void {
  Object.defineProperty(obj, key, { value: v, writable: true, enumerable: true, configurable: true });
}

function getAt(root: Hostile, path: Path): Hostile | undefined {
  let v: Hostile | undefined = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || v instanceof Raw) return undefined;
    v = Object.hasOwn(v, k) ? (v as Record<string | number, Hostile>)[k] : undefined;
  }
  return v;
}

/**
 * Applies `edits` to a copy of `doc`; paths are chosen among `pathsOf(doc)` (computed on the original, so
 * a path can point into a value an earlier edit replaced: such an edit does nothing). Returns the new
 * document (its root may itself be replaced).
 */
export function applyJsonEdits(doc: Json, edits: JsonEdit[], paths: Path[] = pathsOf(doc)): Hostile {
  let root: Hostile = structuredClone(doc);
  for (const e of edits) {
    const path = paths[Math.floor(e.at * paths.length)];
    const parent = path.length ? getAt(root, path.slice(0, -1)) : undefined;
    const key = path[path.length - 1];
    const container = parent !== null && typeof parent === 'object' && !(parent instanceof Raw) ? (parent as Record<string | number, Hostile>) : undefined;
    if (path.length && (!container || !Object.hasOwn(container, key))) continue;
    const current = path.length ? container![key] : root;
    const set = (v: Hostile) => {
      if (path.length) put(container!, key, v);
      else root = v;
    };
    switch (e.op) {
      case 'replace':
        set(clone(e.value));
        break;
      case 'delete':
        if (!path.length) root = null;
        else if (Array.isArray(container)) container.splice(key as number, 1);
        else delete container![key];
        break;
      case 'add':
        if (current !== null && typeof current === 'object' && !Array.isArray(current) && !(current instanceof Raw)) {
          put(current as Record<string, Hostile>, e.key, clone(e.value));
        } else if (Array.isArray(current)) current.push(clone(e.value));
        break;
      case 'wrap':
        set(e.how === 'array' ? [current] : e.how === 'object' ? { content: current } : stringify(current));
        break;
      case 'copy': {
        const from = getAt(root, paths[Math.floor(e.from * paths.length)]);
        if (from !== undefined) set(clone(from));
        break;
      }
    }
  }
  return root;
}

/** `arb` one time in `n`, else null (fc.option's freq is the other way round: null one time in freq). */
export function oneIn<T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ arbitrary: fc.constant(null), weight: n - 1 }, { arbitrary: arb, weight: 1 });
}

/** JSON text with `edits` applied; text that is no JSON (an earlier byte edit), or too deeply nested to copy, is returned unchanged. */
export function editJsonText(text: Buffer, edits: JsonEdit[], substitute: (json: string) => string = (t) => t): Buffer {
  try {
    return Buffer.from(substitute(stringify(applyJsonEdits(JSON.parse(text.toString('utf8')) as Json, edits))), 'utf8');
  } catch (err) {
    if (err instanceof SyntaxError || err instanceof RangeError) return text;
    throw err;
  }
}
