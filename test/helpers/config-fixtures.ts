// The config-variant checkpoints with Hugging Face references (tools/reference/make_config_fixtures.py):
// where they are; they are committed, so a missing directory is an error, not a skip.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES } from './fixtures.js';

export const VARIANT_FIXTURES = join(FIXTURES, 'config-variants');

/** The config-variant fixtures (made by tools/reference/make_config_fixtures.py and committed); their absence is an error. */
export function variantFixtures(): { names: string[]; skip: string | null } {
  if (!existsSync(VARIANT_FIXTURES)) {
    throw new Error('test/fixtures/config-variants is missing: restore it from git, or make it again with python3 tools/reference/make_config_fixtures.py --out test/fixtures/config-variants --tokenizers test/fixtures/tokenizers (torch and transformers needed)');
  }
  const names = readdirSync(VARIANT_FIXTURES).filter((n) => existsSync(join(VARIANT_FIXTURES, n, 'reference.json'))).sort();
  if (names.length < 18) throw new Error(`test/fixtures/config-variants holds ${names.length} fixtures, fewer than the 18 the script makes`);
  return { names, skip: null };
}
