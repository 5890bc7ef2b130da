// Reading fields of a Hugging Face config.json with one-line errors that name the field.
import { fail, show } from '../errors.js';

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
