// Running one HTTP request's choices on a generator: prompts x n requests (each choice with its own seed, so
// that n samples differ and a given seed still gives the same choices), admitted against the server's queue
// bound, cancelled when the client goes away, with their latencies in the metrics. Admission is separate
// from running so that a request refused (bad options, a full queue) is answered with a status code before a
// stream starts.
import type { TextGenerator } from '../engine/generation.js';
import type { GenerateOptions, RequestSpec } from '../engine/options.js';
import type { GenerationResult, TokenEvent } from '../engine/request.js';
import { PeregrineError } from '../errors.js';
import { ApiError } from './errors.js';
import type { Metrics } from './metrics.js';
import type { Served } from './models.js';

export interface Admission {
  /** sequences admitted and not finished, over all requests */
  inFlight: number;
  /** the most sequences admitted at once: the running batch and the queue behind it */
  limit: number;
}

/** One job per prompt and choice; `choice` numbers them prompt-major, as OpenAI numbers choices. */
interface Job { ids: number[]; spec: RequestSpec; choice: number }

export type ChoiceTokens = (choice: number, e: TokenEvent) => void;

export class AdmittedChoices {
  private released = false;
  private firstSeen = false;

  private constructor(private readonly served: Served, private readonly jobs: Job[], private readonly sequences: number,
    private readonly admission: Admission, private readonly metrics: Metrics) {}

  /** Checks every option and prompt and takes the request's place in the queue (429 when full); nothing runs yet. */
  static admit(served: Served, prompts: number[][], perPrompt: number, options: GenerateOptions, admission: Admission, metrics: Metrics): AdmittedChoices {
    const gen = served.generator as TextGenerator;
    const base = gen.checkOptions(options);
    gen.checkPrompts(prompts, base);
    const jobs: Job[] = [];
    prompts.forEach((ids, p) => {
      for (let j = 0; j < perPrompt; j++) jobs.push({ ids, spec: { ...base, seed: (base.seed + j) >>> 0 }, choice: p * perPrompt + j });
    });
    const sequences = jobs.length * (base.beam?.beams ?? 1);
    if (admission.inFlight + sequences > admission.limit) {
      throw new ApiError(429, `the server is busy: ${admission.inFlight} sequences are running or queued and this request adds ${sequences}, beyond its ${admission.limit}; retry later`, 'rate_limit_error', null, 'queue_full');
    }
    admission.inFlight += sequences;
    metrics.queued++;
    return new AdmittedChoices(served, jobs, sequences, admission, metrics);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.admission.inFlight -= this.sequences;
    if (!this.firstSeen) this.metrics.queued--;
  }

  /**
   * Runs every choice to its end: each choice's result in choice order (beam search: one result per prompt,
   * its beams in `sequences`). One choice failing, or `signal`, ends them all (the client gets one error).
   */
  async run(signal: AbortSignal, onToken: ChoiceTokens | null): Promise<GenerationResult[]> {
    const gen = this.served.generator as TextGenerator;
    const series = this.metrics.forModel(this.served.id);
    const start = performance.now();
    const last = new Array<number>(this.jobs.length).fill(-1);
    const results: GenerationResult[] = new Array(this.jobs.length);
    const all = new AbortController();
    const forward = () => all.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    try {
      const settled = await Promise.allSettled(this.jobs.map(async (job, i) => {
        try {
          [results[i]] = await gen.runToEnd([job.ids], job.spec, {
            signal: all.signal,
            onToken: (e) => {
              const now = performance.now();
              const before = last[i];
              if (before < 0) series.ttft.observe((now - start) / 1000);
              else series.itl.observe((now - before) / 1000);
              last[i] = now;
              if (!this.firstSeen) {
                this.firstSeen = true;
                this.metrics.queued--;
              }
              series.generatedTokens.inc();
              onToken?.(job.choice, e);
            },
          });
        } catch (err) {
          all.abort(err);
          throw err;
        }
      }));
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } finally {
      signal.removeEventListener('abort', forward);
      this.release();
    }
    const prompts = new Set(this.jobs.map((j) => j.ids));
    series.promptTokens.inc([...prompts].reduce((a, p) => a + p.length, 0));
    return results;
  }
}

/** An AbortSignal that fires when the client's connection closes before the response was sent. */
export function clientGone(raw: { on(e: 'close', f: () => void): unknown; writableFinished: boolean }): AbortSignal {
  const controller = new AbortController();
  raw.on('close', () => {
    if (!raw.writableFinished) controller.abort(new PeregrineError('bad-request', 'the client disconnected'));
  });
  return controller.signal;
}
