// Finding the CUDA libraries the way a user's machine has them: libcuda.so.1 from the driver (the dynamic
// loader's search path), libcublasLt from PEREGRINE_CUDA_LIBS, CUDA_HOME/CUDA_PATH, the toolkit's usual
// places, the loader's cache, or the nvidia-* Python wheels that PyTorch installs.
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { fail } from '../../errors.js';

type Library = ReturnType<typeof koffi.load>;

export function loadDriver(): Library {
  for (const name of ['libcuda.so.1', 'libcuda.so']) {
    try {
      return koffi.load(name);
    } catch {
      // not on the loader's path
    }
  }
  return fail('device', 'no NVIDIA driver found (libcuda.so.1 could not be loaded); install the NVIDIA driver, or use --device cpu');
}

function candidateDirs(): string[] {
  const env = process.env;
  const dirs: string[] = [];
  for (const d of (env.PEREGRINE_CUDA_LIBS ?? '').split(':')) if (d) dirs.push(d);
  for (const root of [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda']) {
    if (root) dirs.push(join(root, 'lib64'), join(root, 'lib'), join(root, 'targets', 'x86_64-linux', 'lib'), join(root, 'targets', 'sbsa-linux', 'lib'));
  }
  for (const d of listDirs('/usr/local')) if (/^cuda-\d/.test(d)) dirs.push(join('/usr/local', d, 'lib64'), join('/usr/local', d, 'lib'));
  dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib/aarch64-linux-gnu');
  // nvidia-cublas wheels (pip install torch): site-packages/nvidia/{cublas,cu13}/lib
  const sites = [
    ...['/usr/lib', '/usr/local/lib', join(homedir(), '.local', 'lib')].flatMap((base) => listDirs(base).filter((d) => d.startsWith('python3')).flatMap((py) => [join(base, py, 'site-packages'), join(base, py, 'dist-packages')])),
    ...listDirs('/opt').flatMap((o) => listDirs(join('/opt', o, '.venv', 'lib')).map((py) => join('/opt', o, '.venv', 'lib', py, 'site-packages'))),
  ];
  if (env.VIRTUAL_ENV) sites.push(...listDirs(join(env.VIRTUAL_ENV, 'lib')).map((py) => join(env.VIRTUAL_ENV!, 'lib', py, 'site-packages')));
  for (const site of sites) for (const pkg of listDirs(join(site, 'nvidia'))) dirs.push(join(site, 'nvidia', pkg, 'lib'));
  return dirs;
}

function listDirs(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const CUBLASLT_SONAMES = ['libcublasLt.so.13', 'libcublasLt.so.12', 'libcublasLt.so'];

/** libcublasLt, newest soname first in each of `dirs`; the loader's own search for `sonames` last. */
export function loadCublasLt(dirs = candidateDirs(), sonames = CUBLASLT_SONAMES): { lib: Library; path: string } {
  const tried: string[] = [];
  for (const dir of dirs) {
    const files = listDirs(dir).filter((f) => /^libcublasLt\.so(\.\d+)*$/.test(f)).sort((a, b) => b.length - a.length || b.localeCompare(a));
    for (const f of files) {
      const path = join(dir, f);
      if (!existsSync(path)) continue;
      try {
        return { lib: koffi.load(path), path };
      } catch (err) {
        tried.push(`${path}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
  }
  for (const name of sonames) {
    try {
      return { lib: koffi.load(name), path: name };
    } catch {
      // not on the loader's path
    }
  }
  const why = tried.length ? ` (${tried[0]})` : '';
  return fail('device', `libcublasLt was not found${why}; install the CUDA toolkit (it ships libcublasLt), or pip install nvidia-cublas (nvidia-cublas-cu12 for CUDA 12) and set PEREGRINE_CUDA_LIBS to the wheel's library directory (site-packages/nvidia/cu13/lib or nvidia/cublas/lib)`);
}
