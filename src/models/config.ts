// Reading fields of a Hugging Face config.json with one-line errors that name the field. A field whose
// value changes the computation is either implemented or refused by name (unsupported): never ignored.
import { fail, show } from '../errors.js';
import type { Activation } from '../ops/backend.js';
import { HF_ACTIVATIONS } from './activations.js';

const MAX_LABELS = 2 ** 20;

export class ConfigReader {
  constructor(private readonly raw: Record<string, unknown>, private readonly where: string) {}

  private bad(key: string, want: string): never {
    return fail('bad-config', `${this.where}: field "${key}" must be ${want}, got ${show(this.raw[key])}; fix config.json`);
  }

  /** The first of `keys` that is present (configs of one family spell some fields two ways). */
  private pick(keys: string[]): string | undefined {
    return keys.find((k) => this.raw[k] !== undefined && this.raw[k] !== null);
  }

  int(keys: string | string[], fallback?: number): number {
    const list = typeof keys === 'string' ? [keys] : keys;
    const key = this.pick(list);
    if (key === undefined) {
      if (fallback !== undefined) return fallback;
      fail('bad-config', `${this.where}: field "${list[0]}" is missing; config.json does not describe this architecture`);
    }
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) this.bad(key, 'a positive integer');
    return v;
  }

  optionalInt(key: string): number | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.bad(key, 'a non-negative integer');
    return v;
  }

  number(key: string, fallback: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.bad(key, 'a positive number');
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') this.bad(key, 'a string');
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.bad(key, 'true or false');
    return v;
  }

  /** An activation function by its Hugging Face name (activations.ts); names Peregrine does not compute are refused. */
  activation(key: string, fallback: string): Activation {
    const name = this.string(key, fallback);
    const act = Object.hasOwn(HF_ACTIVATIONS, name) ? HF_ACTIVATIONS[name] : undefined;
    if (act === undefined) this.unsupported(key, `Peregrine computes ${Object.keys(HF_ACTIVATIONS).join(', ')}`);
    return act;
  }

  /** Refuses the checkpoint: field `key` has a value that changes the computation in a way Peregrine does not implement. */
  unsupported(key: string, what: string): never {
    return fail('unsupported-config', `${this.where}: ${key} ${show(this.raw[key])} is not supported (${what}); this checkpoint cannot run on Peregrine`);
  }

  /** Refuses a non-empty pruned_heads (layers with fewer heads than the config says). */
  noPrunedHeads(): void {
    const v = this.raw.pruned_heads;
    if (v === undefined || v === null) return;
    if (typeof v !== 'object') this.bad('pruned_heads', 'an object of pruned heads per layer');
    if (Object.values(v).some((heads) => !Array.isArray(heads) || heads.length > 0)) this.unsupported('pruned_heads', 'every layer must keep all its heads');
  }

  /**
   * A classifier's label names: id2label's names in id order (LABEL_i where it names none), as many as num_labels
   * (default: id2label's size, else 2, as Hugging Face's PretrainedConfig).
   */
  labels(): string[] {
    const id2label = this.raw.id2label ?? undefined;
    if (id2label !== undefined && (typeof id2label !== 'object' || Array.isArray(id2label) || !Object.values(id2label).every((v) => typeof v === 'string'))) {
      fail('bad-config', `${this.where}: field "id2label" must map label ids to label names (strings), got ${show(id2label)}; fix config.json`);
    }
    const names = id2label as Record<string, string> | undefined;
    const count = this.optionalInt('num_labels') ?? (names ? Object.keys(names).length : 2);
    // the list of names is made here, before the classifier's shape is checked against the weights
    if (count > MAX_LABELS) fail('bad-config', `${this.where}: field "num_labels" is ${count}, more labels than Peregrine loads (at most ${MAX_LABELS}); fix config.json`);
    return Array.from({ length: count }, (_, i) => names?.[String(i)] ?? `LABEL_${i}`);
  }

  /** A token id or a list of them (configs allow both); [] when absent. */
  tokenIds(key: string): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) this.bad(key, 'a token id or a list of token ids');
    return list as number[];
  }
}

export function divides(where: string, what: string, a: number, b: number): void {
  if (a % b !== 0) fail('bad-config', `${where}: ${what} (${a}) is not divisible by the number of heads (${b}); fix config.json`);
}
