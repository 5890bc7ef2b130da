// How the kernels get built: a checkout's build skips them without nvcc, `npm run build:kernels` insists,
// and prepack builds every default target whatever PEREGRINE_CUDA_ARCHS says, so the published package
// carries them; `prepare` (which npm runs for `npx peregrine` in a checkout and for git installs) never
// runs nvcc. Run over a copy of scripts/build-kernels.mjs with a stand-in nvcc that records its arguments.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ROOT } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'peregrine-kernels-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const root = join(tmp, 'pkg');
mkdirSync(join(root, 'scripts'), { recursive: true });
mkdirSync(join(root, 'kernels'));
copyFileSync(join(ROOT, 'scripts', 'build-kernels.mjs'), join(root, 'scripts', 'build-kernels.mjs'));
for (const f of ['a.cu', 'b.cu', 'common.cuh']) writeFileSync(join(root, 'kernels', f), `// ${f}\n`);
const nvcc = join(tmp, 'nvcc');
writeFileSync(nvcc, `#!${process.execPath}\nconst a = process.argv.slice(2);\nif (!a.includes('--version')) require('node:fs').writeFileSync(a[a.indexOf('-o') + 1], a.join(' '));\n`);
chmodSync(nvcc, 0o755);
const fatbin = (name: string) => join(root, 'dist', 'kernels', `${name}.fatbin`);

function build(flags: string[], env: Record<string, string>) {
  const { CUDA_HOME: _h, PEREGRINE_CUDA_ARCHS: _a, ...rest } = process.env;
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-kernels.mjs'), ...flags], { encoding: 'utf8', env: { ...rest, ...env } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('building the kernels', () => {
  test('a checkout without nvcc skips them in one line', () => {
    const r = build([], { NVCC: join(tmp, 'missing') });
    assert.equal(r.code, 0);
    assert.match(r.out, /nvcc not found.*CPU backend works without them/);
    assert.equal(existsSync(fatbin('a')), false);
  });

  test('asked for (npm run build:kernels) without nvcc, the build fails saying what to install', () => {
    const r = build(['--require'], { NVCC: join(tmp, 'missing') });
    assert.equal(r.code, 1);
    assert.match(r.err, /nvcc not found .* 2 fatbin\(s\) are missing .*install the CUDA toolkit/);
  });

  test('prepack builds every default target, whatever PEREGRINE_CUDA_ARCHS narrows a checkout to', () => {
    const r = build(['--pack'], { NVCC: nvcc, PEREGRINE_CUDA_ARCHS: '90a' });
    assert.equal(r.code, 0, r.err);
    for (const k of ['a', 'b']) {
      const args = readFileSync(fatbin(k), 'utf8');
      for (const sm of ['sm_80', 'sm_86', 'sm_89', 'sm_90a', 'code=compute_90']) assert.ok(args.includes(sm), `${k}: ${sm} in ${args}`);
    }
  });

  test('fatbins newer than their sources need no nvcc; a changed source does', () => {
    assert.equal(build(['--require'], { NVCC: join(tmp, 'missing') }).code, 0);
    const later = Date.now() / 1000 + 60;
    utimesSync(join(root, 'kernels', 'common.cuh'), later, later);
    const r = build(['--require'], { NVCC: join(tmp, 'missing') });
    assert.equal(r.code, 1);
    assert.match(r.err, /2 fatbin\(s\) are missing or older than their sources/);
  });

  test('prepack builds the kernels; prepare and what it runs never do', () => {
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    // a script with every `npm run <name>` in it replaced by that script, recursively
    const expand = (s: string): string => s.replace(/npm run ([\w:-]+)/g, (_, name: string) => `(${expand(scripts[name] ?? '')})`);
    assert.match(scripts.prepack, /build-kernels\.mjs --pack/);
    assert.doesNotMatch(expand(scripts.prepare), /build-kernels/);
  });
});
