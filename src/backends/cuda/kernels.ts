// Loading the fatbins nvcc built (dist/kernels/*.fatbin) and launching their kernels. Each kernel keeps
// one parameter block in native memory (argument slots plus the pointer array cuLaunchKernel reads), so a
// launch writes its arguments in place and makes one FFI call.
// Kernels built for sm_90 or later are launched with programmatic dependent launch (cuLaunchKernelEx with the
// programmatic stream serialization attribute): each begins with pdl_begin() (kernels/common.cuh), which waits for
// its predecessor, so the launch and block scheduling (and the float GEMV's first weight loads) overlap the
// predecessor's tail. PEREGRINE_PDL=0 turns it off (benchmarks compare the two).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail } from '../../errors.js';
import { CU, koffi, type Driver, type Handle } from './driver.js';
import { KERNEL_ARGS, type KernelFamily, type KernelOf } from './signatures.js';

/** Argument kinds (signatures.ts): p = device pointer (0 for null), i = int32, f = float32, u = uint64. */
export type ArgSpec = string;

const KERNEL_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'kernels');

export class Kernel {
  private readonly slots: DataView;
  private readonly params: unknown;
  private readonly launchFn: (...args: unknown[]) => number;
  /** dynamic shared memory allowed beyond the default 48 KiB */
  private smemAllowed = 0;

  /** CUlaunchConfig (56 bytes) and its one CUlaunchAttribute (72 bytes) for cuLaunchKernelEx, when launched with PDL */
  private readonly config: { ptr: unknown; view: DataView; stream: Handle } | null;

  constructor(private readonly driver: Driver, readonly name: string, private readonly fn: Handle, private readonly spec: ArgSpec,
    pdl: boolean) {
    const n = Math.max(1, spec.length);
    const slots = koffi.alloc('uint64_t', n);
    this.params = koffi.alloc('void *', n);
    this.slots = new DataView(koffi.view(slots, 8 * n));
    const ptrs = new DataView(koffi.view(this.params, 8 * n));
    const base = koffi.address(slots);
    for (let i = 0; i < n; i++) ptrs.setBigUint64(8 * i, base + BigInt(8 * i), true);
    this.config = pdl ? launchConfig() : null;
    this.launchFn = driver.raw(pdl ? 'cuLaunchKernelEx' : 'cuLaunchKernel');
  }

  /** Grid (x, y, z), block threads, dynamic shared memory bytes, then the arguments in spec order. */
  launch(stream: Handle, gx: number, gy: number, gz: number, threads: number, smem: number, ...args: number[]): void {
    const s = this.slots, spec = this.spec;
    if (args.length !== spec.length) throw new Error(`internal: ${this.name} takes ${spec.length} arguments, got ${args.length}`);
    for (let i = 0; i < spec.length; i++) {
      const v = args[i], o = 8 * i;
      switch (spec.charCodeAt(i)) {
        case 112: // p
        case 117: // u
          s.setUint32(o, v % 4294967296, true);
          s.setUint32(o + 4, Math.floor(v / 4294967296), true);
          break;
        case 105: // i
          s.setInt32(o, v, true);
          break;
        default: // f
          s.setFloat32(o, v, true);
      }
    }
    const c = this.config;
    let status: number;
    if (c) {
      const v = c.view;
      v.setUint32(0, gx, true);
      v.setUint32(4, gy, true);
      v.setUint32(8, gz, true);
      v.setUint32(12, threads, true);
      v.setUint32(24, smem, true);
      if (c.stream !== stream) {
        v.setBigUint64(32, BigInt(koffi.address(stream)), true);
        c.stream = stream;
      }
      status = this.launchFn(c.ptr, this.fn, this.params, null);
    } else {
      status = this.launchFn(this.fn, gx, gy, gz, threads, 1, 1, smem, stream, this.params, null);
    }
    if (status !== 0) throw this.driver.error(status, `${c ? 'cuLaunchKernelEx' : 'cuLaunchKernel'}(${this.name})`);
  }

  /** Allows more than 48 KiB of dynamic shared memory (one driver call per kernel and size). */
  allowSharedMemory(bytes: number): void {
    if (bytes <= 48 * 1024 || this.smemAllowed >= bytes) return;
    this.driver.call('cuFuncSetAttribute', this.fn, CU.FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    this.smemAllowed = bytes;
  }
}

/** A CUlaunchConfig whose one attribute allows programmatic stream serialization; grid, block, shared memory and
 * stream are written per launch. */
function launchConfig(): { ptr: unknown; view: DataView; stream: Handle } {
  const ptr = koffi.alloc('uint8_t', 56 + 72);
  const view = new DataView(koffi.view(ptr, 56 + 72));
  for (let o = 0; o < 56 + 72; o += 4) view.setUint32(o, 0, true);
  const attrs = BigInt(koffi.address(ptr)) + 56n;
  view.setUint32(16, 1, true); // blockDimY
  view.setUint32(20, 1, true); // blockDimZ
  view.setBigUint64(40, attrs, true); // attrs
  view.setUint32(48, 1, true); // numAttrs
  view.setUint32(56, CU.LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, true); // attrs[0].id
  view.setUint32(56 + 8, 1, true); // attrs[0].value.programmaticStreamSerializationAllowed
  return { ptr, view, stream: null };
}

export class KernelSet {
  private readonly modules: Handle[] = [];
  private readonly byName = new Map<string, Kernel>();
  private readonly moduleOf = new Map<string, Handle>();

  private readonly pdl = process.env.PEREGRINE_PDL !== '0';

  constructor(private readonly driver: Driver, dir = KERNEL_DIR) {
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.fatbin')) : [];
    if (files.length === 0) {
      fail('device', `the CUDA kernels are not built (no fatbins in ${dir}); reinstall peregrine (the published package carries them), or build them with the CUDA toolkit's nvcc: npm run build:kernels in ${join(dir, '..', '..')}`);
    }
    for (const f of files) {
      const image = readFileSync(join(dir, f));
      let mod: Handle;
      try {
        mod = driver.handle('cuModuleLoadData', image);
      } catch (err) {
        return fail('device', `could not load ${join(dir, f)} on this GPU (${(err as Error).message}); rebuild the kernels for its architecture: PEREGRINE_CUDA_ARCHS=<arch> npm run build:kernels in ${join(dir, '..', '..')}`);
      }
      this.modules.push(mod);
      this.moduleOf.set(f.replace(/\.fatbin$/, ''), mod);
    }
  }

  /**
   * The kernel `kernel` + `variant` (`attend_decode` + `_f16`) of family `family` (the .cu file name), taking the
   * arguments signatures.ts declares for `kernel`.
   */
  get<F extends KernelFamily>(family: F, kernel: KernelOf<F>, variant = ''): Kernel {
    const name = kernel + variant;
    const key = `${family}/${name}`;
    let k = this.byName.get(key);
    if (!k) {
      const spec: ArgSpec = (KERNEL_ARGS[family] as Record<string, string>)[kernel];
      const mod = this.moduleOf.get(family);
      if (!mod) throw new Error(`internal: no kernel family ${family}`);
      const fn = this.driver.handle('cuModuleGetFunction', mod, name);
      // the code that runs is built for sm_90 or later, so it begins with griddepcontrol.wait (kernels/common.cuh)
      const pdl = this.pdl && this.driver.int('cuFuncGetAttribute', CU.FUNC_ATTRIBUTE_BINARY_VERSION, fn) >= 90;
      k = new Kernel(this.driver, name, fn, spec, pdl);
      this.byName.set(key, k);
    }
    return k;
  }

  dispose(): void {
    for (const m of this.modules) this.driver.call('cuModuleUnload', m);
    this.modules.length = 0;
    this.byName.clear();
  }
}
