// The config-variant checkpoints with Hugging Face references (tools/reference/make_config_fixtures.py):
// where they are, and the message a test skips with while they have not been made.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES } from './fixtures.js';

export const VARIANT_FIXTURES = join(FIXTURES, 'config-variants');

/** The variant directories, or why there are none. */
export function variantFixtures(): { names: string[]; skip: string | null } {
  if (!existsSync(VARIANT_FIXTURES)) {
    return {
      names: [],
      skip: 'test/fixtures/config-variants is absent: make it with python3 tools/reference/make_config_fixtures.py --out test/fixtures/config-variants --tokenizers test/fixtures/tokenizers (torch and transformers needed)',
    };
  }
  return { names: readdirSync(VARIANT_FIXTURES).filter((n) => existsSync(join(VARIANT_FIXTURES, n, 'reference.json'))).sort(), skip: null };
}
