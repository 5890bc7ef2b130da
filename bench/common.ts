// Shared pieces of the benchmark scripts: arguments, results, and writing them out.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');

export interface BenchResult {
  name: string;
  config: Record<string, unknown>;
  rows: Record<string, string | number>[];
  notes?: string[];
}

export class BenchArgs {
  constructor(private readonly argv: string[]) {}

  flag(name: string): boolean {
    return this.argv.includes(`--${name}`);
  }

  string(name: string): string | undefined {
    const i = this.argv.indexOf(`--${name}`);
    return i < 0 ? undefined : this.argv[i + 1];
  }

  list(name: string, fallback: string[]): string[] {
    return this.string(name)?.split(',').filter(Boolean) ?? fallback;
  }

  int(name: string, fallback: number): number {
    const i = this.argv.indexOf(`--${name}`);
    if (i < 0) return fallback;
    const v = Number(this.argv[i + 1]);
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} needs a whole number >= 1`);
    return v;
  }
}

export function markdownTable(rows: Record<string, string | number>[]): string {
  const cols = Object.keys(rows[0] ?? {});
  const cell = (v: string | number) => (typeof v !== 'number' ? v : Number.isInteger(v) || Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  return [
    `| ${cols.join(' | ')} |`,
    `| ${cols.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${cols.map((c) => cell(r[c] ?? '')).join(' | ')} |`),
  ].join('\n');
}
