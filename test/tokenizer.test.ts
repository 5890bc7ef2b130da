// The tokenizer layer over broken tokenizer files (each case found by fuzzing, test/fuzz/tokenizer.ts):
// what the library does with a wrong type deep in tokenizer.json shows only when the tokenizer is used,
// and must reach the user as a one-line PeregrineError, never as a TypeError or as ids that are no ids.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PeregrineError } from '../src/errors.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { FIXTURES } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-tok-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** bert-base-uncased's tokenizer files, with tokenizer.json and tokenizer_config.json changed by `edit`. */
function bert(edit: (tokenizer: any, config: any) => void): Tokenizer {
  const dir = join(root, `t${n++}`);
  cpSync(join(FIXTURES, 'tokenizers', 'bert-base-uncased'), dir, { recursive: true });
  const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  edit(tok, config);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return Tokenizer.fromDir(dir);
}

function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${(err as Error)?.stack ?? err}`);
    assert.equal(err.code, 'bad-config');
    assert.match(err.message, pattern);
    assert.ok(!/[\r\n]/.test(err.message), 'one line');
    return true;
  });
}

describe('broken tokenizer files (found by fuzzing)', () => {
  test('a vocabulary entry whose id is not a token id', () => {
    for (const id of [-1, '', 'x', [0], 1.5]) {
      const tok = bert((t) => { t.model.vocab.hello = id; });
      refuses(() => tok.encode('hello'), /map text to .*which is not a token id/);
      assert.deepEqual(tok.encode('world'), [101, 2088, 102]);
    }
  });

  test('a post-processor of the wrong shape fails inside the library when encoding', () => {
    const tok = bert((t) => { t.post_processor.single = ['a']; });
    refuses(() => tok.encode('hello'), /failed to encode "hello" \(.*\); restore tokenizer.json/);
  });

  test('a special token whose id is not a token id, or whose entry is not a token', () => {
    refuses(() => bert((t, c) => { t.model.vocab.hello = 'BPE'; c.pad_token = 'hello'; }).specialId('pad_token'), /give pad_token "hello" the id "BPE"/);
    refuses(() => bert((_, c) => { c.eos_token = 5; }).specialToken('eos_token'), /"eos_token" must be a token/);
    assert.equal(bert((_, c) => { c.eos_token = { content: '[SEP]' }; }).specialId('eos_token'), 102);
  });

  test('a chat_template list with entries that are not templates', () => {
    refuses(() => bert((_, c) => { c.chat_template = [null]; }).chatTemplate(), /"chat_template" must be a template or a list/);
    refuses(() => bert((_, c) => { c.chat_template = [{ name: 'default', template: 5 }]; }).chatTemplate(), /"chat_template" must be/);
    assert.equal(bert((_, c) => { c.chat_template = [{ name: 'tools', template: 'a' }, { name: 'default', template: 'b' }]; }).chatTemplate(), 'b');
    assert.equal(bert((_, c) => { c.chat_template = []; }).chatTemplate(), null);
  });
});
