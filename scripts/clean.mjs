#!/usr/bin/env node
// Removes the compiled TypeScript (dist/src, dist/test, dist/bench) before tsc writes it again, so a file
// deleted or moved in the sources leaves no stale output behind to be run by the tests or packed. The
// fatbins in dist/kernels stay: nvcc builds them only when their sources change.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
for (const d of ['src', 'test', 'bench']) rmSync(join(dist, d), { recursive: true, force: true });
