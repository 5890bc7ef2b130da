// cuBLASLt through koffi: row-major out[M, N] = x[M, K] w[N, K]^T (+ bias, + GELU) with fp32 accumulation; x and w
// in f32, f16 or bf16, or both in FP8 E4M3 (tensor cores of sm_89 and later; f32 out, scaled by the caller), or both
// int8 with int32 accumulation and out (SmoothQuant's W8A8; scaled by the caller).
// Per shape, the heuristic's candidate algorithms are timed once and the fastest is kept, in memory and
// in a JSON file under the cache directory (like FasterTransformer's gemm_config), reused on the next load.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { dtypeBytes, type DType } from '../../ops/backend.js';
import type { Driver, Handle } from './driver.js';
import { loadCublasLt } from './libs.js';

const SIGNATURES = {
  create: 'int cublasLtCreate(_Out_ void **handle)',
  destroy: 'int cublasLtDestroy(void *handle)',
  version: 'size_t cublasLtGetVersion()',
  descCreate: 'int cublasLtMatmulDescCreate(_Out_ void **desc, int computeType, int scaleType)',
  descSet: 'int cublasLtMatmulDescSetAttribute(void *desc, int attr, const void *buf, size_t size)',
  layoutCreate: 'int cublasLtMatrixLayoutCreate(_Out_ void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld)',
  layoutSet: 'int cublasLtMatrixLayoutSetAttribute(void *layout, int attr, const void *buf, size_t size)',
  prefCreate: 'int cublasLtMatmulPreferenceCreate(_Out_ void **pref)',
  prefSet: 'int cublasLtMatmulPreferenceSetAttribute(void *pref, int attr, const void *buf, size_t size)',
  prefDestroy: 'int cublasLtMatmulPreferenceDestroy(void *pref)',
  heuristic: 'int cublasLtMatmulAlgoGetHeuristic(void *handle, void *desc, void *a, void *b, void *c, void *d, void *pref, int requested, _Out_ void *results, _Out_ int *returned)',
  matmul: 'int cublasLtMatmul(void *handle, void *desc, const void *alpha, uint64_t A, void *Adesc, uint64_t B, void *Bdesc, const void *beta, uint64_t C, void *Cdesc, uint64_t D, void *Ddesc, const void *algo, uint64_t workspace, size_t wsBytes, void *stream)',
} as const;

/** operand types: the activations' dtypes, E4M3 bytes or int8 */
type BlasType = DType | 'e4m3' | 'i8';
const CUDA_R: Partial<Record<BlasType, number>> = { f32: 0, f16: 2, bf16: 14, i8: 3, i32: 10, e4m3: 28 };
const COMPUTE_32F = 68, COMPUTE_32I = 72;
const bytesOf = (t: BlasType): number => (t === 'e4m3' || t === 'i8' ? 1 : dtypeBytes(t));
const OP_N = 0, OP_T = 1;
const DESC = { TRANSA: 3, TRANSB: 4, EPILOGUE: 7, BIAS_POINTER: 8 } as const;
const LAYOUT_COLS = 3;
export const EPILOGUE = { DEFAULT: 1, BIAS: 4, GELU: 32, GELU_BIAS: 36 } as const;
const PREF_MAX_WORKSPACE = 1;
const HEURISTIC_BYTES = 96; // cublasLtMatmulHeuristicResult_t: algo (64) + workspaceSize + state + wavesCount + reserved[4]
const CANDIDATES = 8;

type Fn = (...args: unknown[]) => number;

interface Plan {
  /** the row count the layouts hold now */
  m: number;
  /** row counts at which the class's algorithm was refused, and the heuristic's choice there */
  exact: Map<number, Buffer>;
  hasBias: boolean;
  /** alpha and beta (1, 0) in the scale type: f32, or int32 for int8 operands */
  one: Float32Array | Int32Array;
  zero: Float32Array | Int32Array;
  desc: Handle;
  a: Handle;
  b: Handle;
  c: Handle;
  algo: Buffer;
}

export class Blas {
  private readonly fns: Record<keyof typeof SIGNATURES, Fn>;
  private readonly handle: Handle;
  private readonly getStatusName: Fn;
  private readonly plans = new Map<string, Plan>();
  private readonly tuned: Record<string, string>;
  private readonly ptr = new BigUint64Array(1);
  private readonly int = new Int32Array(1);
  readonly version: number;
  readonly path: string;
  /** shapes tuned by timing in this process (the rest came from the cache file) */
  tunings = 0;
  readonly cacheFile: string;

  constructor(private readonly driver: Driver, private readonly stream: Handle, private readonly workspace: { ptr: number; bytes: number }, deviceName: string) {
    const { lib, path } = loadCublasLt();
    this.path = path;
    this.fns = {} as Record<keyof typeof SIGNATURES, Fn>;
    for (const [k, sig] of Object.entries(SIGNATURES)) this.fns[k as keyof typeof SIGNATURES] = lib.func(sig) as Fn;
    this.getStatusName = lib.func('const char *cublasLtGetStatusName(int status)') as Fn;
    this.version = Number(this.fns.version());
    const out: Handle[] = [null];
    this.check(this.fns.create(out), 'cublasLtCreate');
    this.handle = out[0];
    const cacheRoot = process.env.PEREGRINE_CACHE ?? join(homedir(), '.cache', 'peregrine');
    this.cacheFile = join(cacheRoot, 'gemm', `${deviceName.replace(/[^A-Za-z0-9._-]+/g, '_')}-cublasLt${this.version}.json`);
    this.tuned = readCache(this.cacheFile);
  }

  private check(status: number, call: string): void {
    if (status !== 0) throw new Error(`cuBLASLt error ${String(this.getStatusName(status))} (${status}) in ${call}`);
  }

  /**
   * out[M, N] (outType) = x[M, K] w[N, K]^T (+ bias[N]) with epilogue, plus the old out when `accumulate`;
   * x, w and bias are `inType`. `ldOut` is out's row stride in elements (N columns of a wider matrix).
   */
  matmul(out: number, outType: DType, x: number, w: number, bias: number, epilogue: number, M: number, N: number, K: number, inType: BlasType, accumulate = false,
    ldOut = N): void {
    const plan = this.plan(outType, inType, epilogue, M, N, K, ldOut);
    if (plan.m !== M) this.setRows(plan, M);
    if (bias) {
      this.ptr[0] = BigInt(bias);
      this.check(this.fns.descSet(plan.desc, DESC.BIAS_POINTER, this.ptr, 8), 'cublasLtMatmulDescSetAttribute(BIAS_POINTER)');
    }
    const exact = plan.exact.get(M);
    if (exact) return this.run(plan, out, x, w, exact, accumulate);
    try {
      this.run(plan, out, x, w, plan.algo, accumulate);
    } catch {
      // cuBLASLt checks an algorithm against the problem when called: take the heuristic's choice here
      const algo = this.candidates(plan, `M${M} N${N} K${K}`).algos[0];
      plan.exact.set(M, algo);
      this.run(plan, out, x, w, algo, accumulate);
    }
  }

  private run(p: Plan, out: number, x: number, w: number, algo: Buffer, accumulate = false): void {
    this.check(this.fns.matmul(this.handle, p.desc, p.one, w, p.a, x, p.b, accumulate ? p.one : p.zero, out, p.c, out, p.c, algo,
      this.workspace.ptr, this.workspace.bytes, this.stream), 'cublasLtMatmul');
  }

  /** The x and out layouts for M rows (the column count of their column-major views). */
  private setRows(p: Plan, M: number): void {
    const cols = new BigUint64Array([BigInt(M)]);
    this.check(this.fns.layoutSet(p.b, LAYOUT_COLS, cols, 8), 'cublasLtMatrixLayoutSetAttribute(COLS)');
    this.check(this.fns.layoutSet(p.c, LAYOUT_COLS, cols, 8), 'cublasLtMatrixLayoutSetAttribute(COLS)');
    p.m = M;
  }

  /**
   * The plan of a GEMM shape class: row counts are grouped by the power of two above them, tuned once at
   * that size and run at any row count of the class (a prefill pass has a different row count every time,
   * and timing candidates for each would cost more than the pass).
   */
  private plan(outType: DType, inType: BlasType, epilogue: number, rows: number, N: number, K: number, ldOut: number): Plan {
    const M = rowClass(rows);
    const key = `${inType}>${outType} e${epilogue} M${M} N${N} K${K}${ldOut === N ? '' : ` ld${ldOut}`}`;
    let plan = this.plans.get(key);
    if (plan) return plan;
    const h = (name: keyof typeof SIGNATURES, ...args: unknown[]): Handle => {
      const out: Handle[] = [null];
      this.check(this.fns[name](out, ...args), String(name));
      return out[0];
    };
    const int8 = inType === 'i8';
    if (int8 !== (outType === 'i32')) throw new Error(`internal: cuBLASLt multiplies int8 into int32 only, not ${inType} into ${outType}`);
    const desc = h('descCreate', int8 ? COMPUTE_32I : COMPUTE_32F, int8 ? CUDA_R.i32 : CUDA_R.f32);
    const setInt = (attr: number, v: number) => {
      this.int[0] = v;
      this.check(this.fns.descSet(desc, attr, this.int, 4), `cublasLtMatmulDescSetAttribute(${attr})`);
    };
    setInt(DESC.TRANSA, OP_T);
    setInt(DESC.TRANSB, OP_N);
    setInt(DESC.EPILOGUE, epilogue);
    // column-major view of row-major data: w is K x N (op T), x is K x M, out is N x M
    const a = h('layoutCreate', CUDA_R[inType], K, N, K);
    const b = h('layoutCreate', CUDA_R[inType], K, M, K);
    const c = h('layoutCreate', CUDA_R[outType], N, M, ldOut);
    const [one, zero] = int8 ? [new Int32Array([1]), new Int32Array([0])] : [new Float32Array([1]), new Float32Array([0])];
    plan = { m: M, exact: new Map(), hasBias: epilogue === EPILOGUE.BIAS || epilogue === EPILOGUE.GELU_BIAS, one, zero, desc, a, b, c, algo: Buffer.alloc(64) };
    const cached = this.tuned[key];
    plan.algo = cached ? Buffer.from(cached, 'hex') : this.tune(plan, outType, inType, M, N, K, ldOut, key);
    this.plans.set(key, plan);
    return plan;
  }

  /** The heuristic's supported candidates for the plan's shape, best guess first. */
  private candidates(plan: Plan, key: string): { algos: Buffer[] } {
    const prefOut: Handle[] = [null];
    this.check(this.fns.prefCreate(prefOut), 'cublasLtMatmulPreferenceCreate');
    const pref = prefOut[0];
    this.check(this.fns.prefSet(pref, PREF_MAX_WORKSPACE, new BigUint64Array([BigInt(this.workspace.bytes)]), 8), 'cublasLtMatmulPreferenceSetAttribute');
    const results = Buffer.alloc(HEURISTIC_BYTES * CANDIDATES);
    const returned = [0];
    this.check(this.fns.heuristic(this.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, CANDIDATES, results, returned), `cublasLtMatmulAlgoGetHeuristic(${key})`);
    this.fns.prefDestroy(pref);
    const algos: Buffer[] = [];
    for (let i = 0; i < returned[0]; i++) {
      // state (after the 64-byte algo and the workspace size): 0 when supported
      if (results.readInt32LE(i * HEURISTIC_BYTES + 72) === 0) algos.push(Buffer.from(results.subarray(i * HEURISTIC_BYTES, i * HEURISTIC_BYTES + 64)));
    }
    if (algos.length === 0) throw new Error(`cuBLASLt has no algorithm for ${key}`);
    return { algos };
  }

  /** Times the heuristic's candidates on scratch data and keeps the fastest. */
  private tune(plan: Plan, outType: DType, inType: BlasType, M: number, N: number, K: number, ldOut: number, key: string): Buffer {
    const { algos } = this.candidates(plan, key);
    // operands: any memory of the right size works for timing; bias reads stay inside w
    const bytes = Math.max(M * K, N * K) * bytesOf(inType) + M * ldOut * bytesOf(outType);
    const scratch = [0];
    this.driver.call('cuMemAlloc', scratch, bytes);
    const x = scratch[0], w = scratch[0], out = scratch[0] + Math.max(M * K, N * K) * bytesOf(inType);
    if (plan.hasBias) {
      this.ptr[0] = BigInt(w);
      this.check(this.fns.descSet(plan.desc, DESC.BIAS_POINTER, this.ptr, 8), 'cublasLtMatmulDescSetAttribute(BIAS_POINTER)');
    }
    let best = -1, bestMs = Infinity;
    const ev = [this.driver.handle('cuEventCreate', 0), this.driver.handle('cuEventCreate', 0)];
    try {
      for (let i = 0; i < algos.length; i++) {
        const algo = algos[i];
        try {
          this.run(plan, out, x, w, algo);
          this.driver.call('cuEventRecord', ev[0], this.stream);
          for (let r = 0; r < 5; r++) this.run(plan, out, x, w, algo);
          this.driver.call('cuEventRecord', ev[1], this.stream);
          this.driver.call('cuEventSynchronize', ev[1]);
          const ms = [0];
          this.driver.call('cuEventElapsedTime', ms, ev[0], ev[1]);
          if (ms[0] < bestMs) {
            bestMs = ms[0];
            best = i;
          }
        } catch {
          // a candidate that fails to run is skipped
        }
      }
    } finally {
      this.driver.call('cuStreamSynchronize', this.stream);
      this.driver.call('cuMemFree', scratch[0]);
      for (const e of ev) this.driver.call('cuEventDestroy', e);
    }
    if (best < 0) throw new Error(`no cuBLASLt algorithm ran for ${key}`);
    const algo = algos[best];
    this.tuned[key] = algo.toString('hex');
    this.tunings++;
    writeCache(this.cacheFile, this.tuned);
    return algo;
  }

  dispose(): void {
    this.fns.destroy(this.handle);
  }
}

/** The row count a GEMM of `rows` rows is tuned at: the power of two at or above it (from 16). */
export function rowClass(rows: number): number {
  return Math.max(16, 2 ** Math.ceil(Math.log2(rows)));
}

function readCache(file: string): Record<string, string> {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8'));
    return typeof v === 'object' && v && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

function writeCache(file: string, value: Record<string, string>): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(`${file}.tmp`, JSON.stringify(value, null, 1));
    renameSync(`${file}.tmp`, file);
  } catch {
    // an unwritable cache only costs tuning again next time
  }
}

