#!/usr/bin/env node
// Builds kernels/*.cu into dist/kernels/*.fatbin with nvcc. Targets: sm_80, sm_86, sm_89, sm_90a and
// compute_90 PTX; PEREGRINE_CUDA_ARCHS narrows them (e.g. "90a" or "80,90a"). A fatbin newer than its
// sources, built for the same targets, is kept.
//   node scripts/build-kernels.mjs            (npm run build in a checkout) without nvcc, says so in one
//                                             line and stops: the CPU backend needs no kernels
//   node scripts/build-kernels.mjs --require  (npm run build:kernels) fails unless every fatbin is built
//   node scripts/build-kernels.mjs --pack     (prepack) the same for every default target, whatever
//                                             PEREGRINE_CUDA_ARCHS says: the published package carries them
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'kernels');
const out = join(root, 'dist', 'kernels');
const nvcc = process.env.NVCC ?? (process.env.CUDA_HOME ? join(process.env.CUDA_HOME, 'bin', 'nvcc') : 'nvcc');
const pack = process.argv.includes('--pack');
const required = pack || process.argv.includes('--require');

const archs = ((pack ? undefined : process.env.PEREGRINE_CUDA_ARCHS) ?? '80,86,89,90a').split(',').map((a) => a.trim()).filter(Boolean);
for (const a of archs) {
  if (!/^\d{2,3}a?$/.test(a)) {
    console.error(`build-kernels: PEREGRINE_CUDA_ARCHS entry "${a}" is not an architecture like 80 or 90a`);
    process.exit(1);
  }
}
const ptx = archs.map((a) => a.replace('a', '')).sort((x, y) => Number(y) - Number(x))[0];
const gencode = [...archs.map((a) => `-gencode=arch=compute_${a},code=sm_${a}`), `-gencode=arch=compute_${ptx},code=compute_${ptx}`];

const headers = readdirSync(src).filter((f) => f.endsWith('.cuh')).map((f) => statSync(join(src, f)).mtimeMs);
const newestHeader = Math.max(0, ...headers);
// the architectures the fatbins were built for: a change rebuilds everything
const stamp = join(out, '.archs');
const sameArchs = existsSync(stamp) && readFileSync(stamp, 'utf8') === gencode.join(' ');
const jobs = readdirSync(src).filter((f) => f.endsWith('.cu')).filter((f) => {
  const target = join(out, f.replace(/\.cu$/, '.fatbin'));
  if (!existsSync(target) || !sameArchs) return true;
  const t = statSync(target).mtimeMs;
  return t < statSync(join(src, f)).mtimeMs || t < newestHeader;
});
if (jobs.length === 0) process.exit(0);

try {
  execFileSync(nvcc, ['--version'], { stdio: 'ignore' });
} catch {
  if (required) {
    console.error(`build-kernels: nvcc not found (${nvcc}) and ${jobs.length} fatbin(s) are missing or older than their sources; install the CUDA toolkit, or set NVCC or CUDA_HOME`);
    process.exit(1);
  }
  console.log(`build-kernels: nvcc not found (${nvcc}); CUDA kernels not built, the CPU backend works without them (set NVCC or CUDA_HOME, then npm run build:kernels)`);
  process.exit(0);
}
mkdirSync(out, { recursive: true });

const run = promisify(execFile);
const started = Date.now();
let failed = false;
const queue = [...jobs];
async function worker() {
  for (let f = queue.shift(); f; f = queue.shift()) {
    const target = join(out, f.replace(/\.cu$/, '.fatbin'));
    const args = ['-std=c++17', '-O3', '--extended-lambda', '-fatbin', ...gencode, '-o', `${target}.tmp`, join(src, f)];
    try {
      await run(nvcc, args, { maxBuffer: 16 << 20 });
      renameSync(`${target}.tmp`, target);
    } catch (err) {
      failed = true;
      console.error(`build-kernels: ${f} failed:\n${err.stderr || err.message}`);
    }
  }
}
await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs.length, cpus().length)) }, worker));
if (failed) process.exit(1);
writeFileSync(stamp, gencode.join(' '));
console.log(`build-kernels: ${jobs.length} kernel file(s) for sm_${archs.join(', sm_')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
