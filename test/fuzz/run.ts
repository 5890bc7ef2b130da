// npm run fuzz: every target for a time budget with random seeds, each in a worker thread watched for
// hangs. Prints per target the cases run and every distinct failure with the seed and path that replay it.
//
//   FUZZ_SECONDS=600 npm run fuzz               total time, split evenly over the targets (default 60)
//   FUZZ_TARGETS=safetensors,index npm run fuzz only these targets
//   FUZZ_SEED=123 npm run fuzz                  first seed (default: random); each round uses the next
//   FUZZ_HANG_SECONDS=60 npm run fuzz           a case running longer than this is reported as a hang
//   FUZZ_REPLAY=safetensors:123:45 npm run fuzz replay one case (target:seed:path) and print its error
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { tally } from './harness.js';
import { targets } from './targets.js';

interface Job {
  target: string;
  seconds: number;
  seed: number;
}

type Message =
  | { type: 'case'; seed: number; index: number }
  | { type: 'failure'; seed: number; path: string; error: string; example: string }
  | { type: 'done'; cases: number; tally: [string, number][] };

/** A failure's kind: its first line without the case directory, numbers and long runs, so that one defect is reported once. */
function signature(error: string): string {
  // the fuzz targets' own assertions say what went wrong before a colon, and the value after it
  if (!error.startsWith('expected a PeregrineError')) error = error.split(': ')[0];
  return error.replace(/\/\S*peregrine-fuzz-[^/\s]+\/case\d+/g, '<case>').replace(/(.)\1{15,}/g, '$1$1$1...').replace(/\d+/g, 'N').slice(0, 100);
}

function short(v: unknown, max = 600): string {
  let s: string;
  try {
    s = fc.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max)}... (${s.length} chars)` : s;
}

/** In a worker: run one target with successive seeds until its time is up. */
async function work(job: Job): Promise<void> {
  const target = targets().find((t) => t.name === job.target)!;
  const post = (m: Message) => parentPort!.postMessage(m);
  const end = Date.now() + job.seconds * 1000;
  let cases = 0;
  for (let seed = job.seed; Date.now() < end; seed++) {
    let index = 0;
    const prop = fc.asyncProperty(target.arbitrary, async (input) => {
      post({ type: 'case', seed, index: index++ });
      cases++;
      await target.check(input);
    });
    const r = await fc.check(prop, { seed, numRuns: 1_000_000, interruptAfterTimeLimit: Math.max(1, end - Date.now()), markInterruptAsFailure: false });
    if (r.failed) {
      const err = r.errorInstance as Error | undefined;
      const line = (err?.message ?? String(r.errorInstance)).split('\n')[0];
      post({ type: 'failure', seed, path: r.counterexamplePath ?? '', error: line.length > 400 ? `${line.slice(0, 400)}...` : line, example: short(r.counterexample?.[0]) });
    }
  }
  post({ type: 'done', cases, tally: [...tally] });
}

interface Report {
  cases: number;
  /** how far the cases got (stage: ok or error code) */
  tally: Map<string, number>;
  failures: { seed: number; path: string; error: string; example: string }[];
  hangs: number;
}

/** Runs one target in a worker; a worker silent for `hang` seconds is stopped and the case it was on reported. */
function runTarget(name: string, seconds: number, seed: number, hang: number): Promise<Report> {
  const report: Report = { cases: 0, tally: new Map(), failures: [], hangs: 0 };
  const end = Date.now() + seconds * 1000;
  const start = (firstSeed: number): Promise<void> => new Promise((resolve) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { target: name, seconds: Math.max(0.1, (end - Date.now()) / 1000), seed: firstSeed } satisfies Job });
    let last = { seed: firstSeed, index: -1 };
    let counted = 0;
    let timer = setTimeout(stuck, hang * 1000);
    let finished = false;
    function stuck(): void {
      report.hangs++;
      report.failures.push({ seed: last.seed, path: String(last.index), error: `no answer in ${hang} s (hang)`, example: '' });
      finished = true;
      void w.terminate();
      report.cases += counted;
      // carry on with the next seed for the time that is left
      if (Date.now() < end - 1000) start(last.seed + 1).then(resolve);
      else resolve();
    }
    w.on('message', (m: Message) => {
      clearTimeout(timer);
      timer = setTimeout(stuck, hang * 1000);
      if (m.type === 'case') {
        last = m;
        counted++;
      } else if (m.type === 'failure') {
        const seen = report.failures.some((f) => signature(f.error) === signature(m.error));
        if (!seen) report.failures.push(m);
        if (!seen) console.log(`  ${name}: FAILURE: ${m.error} (FUZZ_REPLAY=${name}:${m.seed}:${m.path})`);
      } else {
        finished = true;
        clearTimeout(timer);
        report.cases += m.cases;
        for (const [k, v] of m.tally) report.tally.set(k, (report.tally.get(k) ?? 0) + v);
        resolve();
      }
    });
    w.on('error', (err) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      report.cases += counted;
      report.failures.push({ seed: last.seed, path: String(last.index), error: `the worker died: ${err.message}`, example: '' });
      if (Date.now() < end - 1000) start(last.seed + 1).then(resolve);
      else resolve();
    });
  });
  return start(seed).then(() => report);
}

async function replay(spec: string): Promise<void> {
  const [name, seed, path] = spec.split(':');
  const target = targets().find((t) => t.name === name);
  if (!target) throw new Error(`no target ${name}; targets: ${targets().map((t) => t.name).join(', ')}`);
  const prop = fc.asyncProperty(target.arbitrary, (input) => target.check(input));
  const r = await fc.check(prop, { seed: Number(seed), path, numRuns: 1, endOnFailure: true });
  if (!r.failed) {
    console.log('passes');
    return;
  }
  console.log('input:', short(r.counterexample?.[0], 100_000));
  console.log((r.errorInstance as Error)?.stack ?? r.errorInstance);
  process.exitCode = 1;
}

async function main(): Promise<void> {
  if (process.env.FUZZ_REPLAY) return replay(process.env.FUZZ_REPLAY);
  const total = Number(process.env.FUZZ_SECONDS ?? 60);
  const hang = Number(process.env.FUZZ_HANG_SECONDS ?? 60);
  const wanted = process.env.FUZZ_TARGETS?.split(',').map((s) => s.trim()).filter(Boolean);
  const list = targets().filter((t) => !wanted || wanted.includes(t.name)).map((t) => t.name);
  if (list.length === 0) throw new Error(`no such targets: ${wanted}; targets: ${targets().map((t) => t.name).join(', ')}`);
  const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`fuzzing ${list.length} targets for ${total} s (${(total / list.length).toFixed(0)} s each), first seed ${seed}`);
  const rows: [string, Report][] = [];
  for (const name of list) {
    const r = await runTarget(name, total / list.length, seed, hang);
    console.log(`${name}: ${r.cases} cases, ${r.failures.length} distinct failure(s)`);
    for (const [k, v] of [...r.tally].sort()) console.log(`  ${k}: ${v}`);
    rows.push([name, r]);
  }
  console.log('\ntarget            cases  failures');
  for (const [name, r] of rows) console.log(`${name.padEnd(16)} ${String(r.cases).padStart(6)}  ${r.failures.length}`);
  const failures = rows.flatMap(([name, r]) => r.failures.map((f) => ({ name, ...f })));
  for (const f of failures) console.log(`\n${f.name}: ${f.error}\n  replay: FUZZ_REPLAY=${f.name}:${f.seed}:${f.path} npm run fuzz\n  input: ${f.example}`);
  if (failures.length) process.exitCode = 1;
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  work(workerData as Job).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
