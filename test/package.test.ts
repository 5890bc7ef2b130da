// What an npm user gets: the packed tarball holds the compiled library, the kernels (built and as
// sources) and the script that builds them, and nothing of the tests or benchmarks; installed into an
// empty directory, its `peregrine` command runs on the CPU as the checkout's does.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CLI, fixture, ROOT } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'peregrine-pack-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The environment without what `npm test` sets for this package, which would point npm back at the checkout. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || (/^npm_config_/i.test(k) && !/^npm_config_(local_)?prefix$/i.test(k))));

function npm(args: string[], cwd: string): string {
  // the npm that runs this suite, where there is one
  const cli = process.env.npm_execpath;
  const [cmd, argv] = cli && /\.[cm]?js$/.test(cli) ? [process.execPath, [cli, ...args]] : ['npm', args];
  return execFileSync(cmd, argv, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
}

test('npm pack ships the compiled library and the kernels, and no tests, benchmarks or test helpers', async (t) => {
  // --ignore-scripts: pack what `npm test` has just compiled. prepack needs nvcc (or built fatbins), and
  // prepare would compile dist/ again under the tests that run from it.
  const [packed] = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], ROOT)) as { filename: string; files: { path: string }[] }[];
  const files = packed.files.map((f) => f.path).sort();
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

  await t.test('contents', () => {
    assert.ok(files.includes('dist/src/cli/main.js') && files.includes('dist/src/index.js') && files.includes('dist/src/index.d.ts'));
    for (const k of readdirSync(join(ROOT, 'kernels'))) assert.ok(files.includes(`kernels/${k}`), `kernels/${k} is shipped`);
    assert.ok(files.includes('scripts/build-kernels.mjs'));
    const fatbins = existsSync(join(ROOT, 'dist', 'kernels')) ? readdirSync(join(ROOT, 'dist', 'kernels')).filter((f) => f.endsWith('.fatbin')) : [];
    for (const f of fatbins) assert.ok(files.includes(`dist/kernels/${f}`), `dist/kernels/${f} is shipped`);
    const unwanted = files.filter((f) => /^dist\/(test|bench)\/|(^|\/)(test|testing|bench|__pycache__|tools|docs)\/|\.test\.js$/.test(f));
    assert.deepEqual(unwanted, []);
  });

  await t.test('installed into an empty directory, peregrine --version and a CPU generate run', () => {
    const app = join(tmp, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'peregrine-pack-test', private: true }));
    // from npm's cache where it has the dependencies (npm ci filled it), else from the registry
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, packed.filename)], app);
    const bin = join(app, 'node_modules', '.bin', 'peregrine');
    const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(run(bin, ['--version']).trim(), version);
    const args = ['generate', '-m', fixture('gpt2-tiny'), '-p', 'hi', '-n', '5', '--device', 'cpu', '--json'];
    const got = JSON.parse(run(bin, args)) as { ids: number[]; text: string };
    assert.equal(got.ids.length, 5);
    assert.deepEqual(got, JSON.parse(run(process.execPath, [CLI, ...args])));
  });
});
