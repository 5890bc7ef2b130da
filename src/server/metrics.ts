// /metrics in Prometheus' text format (prom-client, on a registry of the server's own): the scheduler's
// state read when scraped (running and waiting sequences, KV blocks), and what requests did as they ran
// (tokens, time to first token, time between tokens, requests by endpoint and status).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Served } from './models.js';

export interface ModelSeries {
  promptTokens: { inc(n?: number): void };
  generatedTokens: { inc(n?: number): void };
  ttft: { observe(seconds: number): void };
  itl: { observe(seconds: number): void };
}

export class Metrics {
  readonly registry = new Registry();
  /** HTTP requests admitted whose first token has not come yet (waiting for a slot, or in prefill) */
  queued = 0;
  readonly promptTokens: Counter<'model'>;
  readonly generatedTokens: Counter<'model'>;
  readonly ttft: Histogram<'model'>;
  readonly itl: Histogram<'model'>;
  readonly requests: Counter<'endpoint' | 'status'>;

  constructor(models: Served[]) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'peregrine_process_' });
    const generators = models.filter((m) => m.kind === 'causal-lm');
    const perModel = (name: string, help: string, read: (s: ReturnType<NonNullable<Served['generator']>['scheduler']['stats']>) => number) => new Gauge({
      name, help, labelNames: ['model'], registers,
      collect() {
        for (const m of generators) this.set({ model: m.id }, read(m.generator!.scheduler.stats()));
      },
    });
    const self = this;
    new Gauge({ name: 'peregrine_queue_depth', help: 'requests admitted that have not produced their first token', registers, collect() { this.set(self.queued); } });
    perModel('peregrine_running_sequences', 'sequences in the running batch', (s) => s.running);
    perModel('peregrine_waiting_sequences', 'sequences waiting for a slot or for KV blocks', (s) => s.waiting);
    perModel('peregrine_kv_blocks_used', 'KV-cache blocks held by sequences', (s) => s.blocksUsed);
    perModel('peregrine_kv_blocks_cached', 'KV-cache blocks free but holding a cached prefix', (s) => s.blocksCached);
    perModel('peregrine_kv_blocks_total', 'KV-cache blocks in the pool', (s) => s.blocksTotal);
    perModel('peregrine_preemptions', 'sequences preempted so far', (s) => s.preemptions);
    this.promptTokens = new Counter({ name: 'peregrine_prompt_tokens_total', help: 'prompt tokens of finished requests', labelNames: ['model'], registers });
    this.generatedTokens = new Counter({ name: 'peregrine_generation_tokens_total', help: 'tokens generated', labelNames: ['model'], registers });
    const latency = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    this.ttft = new Histogram({ name: 'peregrine_time_to_first_token_seconds', help: 'from admission to the first generated token', labelNames: ['model'], buckets: latency, registers });
    this.itl = new Histogram({ name: 'peregrine_inter_token_latency_seconds', help: 'between consecutive tokens of a sequence', labelNames: ['model'], buckets: latency, registers });
    this.requests = new Counter({ name: 'peregrine_requests_total', help: 'requests answered, by endpoint and status code', labelNames: ['endpoint', 'status'], registers });
  }

  private readonly series = new Map<string, ModelSeries>();

  /** One model's series, their labels resolved once (a token's update is then a plain add). */
  forModel(model: string): ModelSeries {
    let s = this.series.get(model);
    if (!s) {
      const labels = { model };
      s = { promptTokens: this.promptTokens.labels(labels), generatedTokens: this.generatedTokens.labels(labels), ttft: this.ttft.labels(labels), itl: this.itl.labels(labels) };
      this.series.set(model, s);
    }
    return s;
  }
}
