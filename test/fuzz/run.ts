// npm run fuzz: every target for a time budget with random seeds, each in a child process watched for
// hangs and crashes (a fatal V8 error or an out-of-memory abort takes the whole process down). Prints per target the cases run and every distinct failure with the seed and path that replay it.
//
//   FUZZ_SECONDS=600 npm run fuzz               total time, split evenly over the targets (default 60)
//   FUZZ_TARGETS=safetensors,index npm run fuzz only these targets
//   FUZZ_SEED=123 npm run fuzz                  first seed (default: random); each round uses the next
//   FUZZ_HANG_SECONDS=60 npm run fuzz           a case running longer than this is reported as a hang
//   FUZZ_REPLAY=safetensors:123:45 npm run fuzz replay one case (target:seed:path) and print its error
import fc from 'fast-check';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { knownDefect, tally } from './harness.js';
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

/** In a child: run one target with successive seeds until its time is up. */
async function work(job: Job): Promise<void> {
  const target = targets().find((t) => t.name === job.target)!;
  const post = (m: Message) => process.send!(m);
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

/** Runs one target in a child process; one silent for `hang` seconds is killed and the case it was on reported, as is one that dies. */
function runTarget(name: string, seconds: number, seed: number, hang: number): Promise<Report> {
  const report: Report = { cases: 0, tally: new Map(), failures: [], hangs: 0 };
  const end = Date.now() + seconds * 1000;
  const start = (firstSeed: number): Promise<void> => new Promise((resolve) => {
    const job: Job = { target: name, seconds: Math.max(0.1, (end - Date.now()) / 1000), seed: firstSeed };
    const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, FUZZ_JOB: JSON.stringify(job) }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString('utf8')).slice(-4000); });
    let last = { seed: firstSeed, index: -1 };
    let counted = 0;
    let done = false;
    let timer = setTimeout(stuck, hang * 1000);
    /** the child is gone without saying it was done: report the case it was on, and go on with the next seed */
    function lost(why: string): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      report.cases += counted;
      if (!report.failures.some((f) => signature(f.error) === signature(why))) {
        report.failures.push({ seed: last.seed, path: String(last.index), error: why, example: '(FUZZ_REPLAY prints it)' });
        console.log(`  ${name}: FAILURE: ${why} (FUZZ_REPLAY=${name}:${last.seed}:${last.index})`);
      }
      if (Date.now() < end - 1000) start(last.seed + 1).then(resolve);
      else resolve();
    }
    function stuck(): void {
      report.hangs++;
      child.kill('SIGKILL');
      lost(`no answer in ${hang} s (hang)`);
    }
    child.on('message', (m: Message) => {
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
        done = true;
        clearTimeout(timer);
        report.cases += m.cases;
        for (const [k, v] of m.tally) report.tally.set(k, (report.tally.get(k) ?? 0) + v);
      }
    });
    child.on('exit', (code, signal) => {
      const known = knownDefect(stderr);
      if (done) resolve();
      else if (known) {
        // a known defect (harness.ts KNOWN) that kills the process: counted, not failed
        report.tally.set(`died: KNOWN (${known})`, (report.tally.get(`died: KNOWN (${known})`) ?? 0) + 1);
        done = true;
        clearTimeout(timer);
        report.cases += counted;
        if (Date.now() < end - 1000) start(last.seed + 1).then(resolve);
        else resolve();
      } else lost(`the process died (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').filter(Boolean).slice(0, 3).join(' | ').slice(0, 300)}`);
    });
  });
  return start(seed).then(() => report);
}

async function replay(spec: string): Promise<void> {
  const [name, seed, path] = spec.split(':');
  const target = targets().find((t) => t.name === name);
  if (!target) throw new Error(`no target ${name}; targets: ${targets().map((t) => t.name).join(', ')}`);
  // the input is printed before it runs: a case that kills the process shows it too
  const prop = fc.asyncProperty(target.arbitrary, (input) => {
    console.log('input:', short(input, 100_000));
    return target.check(input);
  });
  const r = await fc.check(prop, { seed: Number(seed), path, endOnFailure: true });
  if (!r.failed) {
    console.log('passes');
    return;
  }
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

if (process.env.FUZZ_JOB) {
  work(JSON.parse(process.env.FUZZ_JOB) as Job).then(
    () => process.disconnect(),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
