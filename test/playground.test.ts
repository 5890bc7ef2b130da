// The chat page at / in a real headless browser (Playwright driving the system's Chromium): it lists the
// model, streams a reply into the conversation and shows the speed. Skips, saying so, where no browser is
// installed. PEREGRINE_SCREENSHOT=<file.png> saves what the page looks like (docs/playground.png).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { createServer, loadGenerator, type PeregrineServer, type TextGenerator } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

const BROWSER = process.env.PEREGRINE_CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const skip = BROWSER === undefined ? 'no Chromium installed (apt-get install chromium, or set PEREGRINE_CHROMIUM)' : false;

let gen: TextGenerator, server: PeregrineServer, base: string, browser: Browser;

before(async () => {
  if (skip) return;
  gen = await loadGenerator(fixture('llama-tiny'));
  server = createServer([{ id: 'llama-tiny', created: 1, kind: 'causal-lm', generator: gen }]);
  base = await server.listen(0, '127.0.0.1');
  browser = await chromium.launch({ executablePath: BROWSER, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'] });
});
after(async () => {
  if (skip) return;
  await browser?.close();
  await server.app.close();
  gen.dispose();
});

test('the playground streams a reply with the sampling settings and shows tokens/s', { skip }, async () => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(base);
  await page.waitForSelector('#model option', { state: 'attached' });
  assert.equal(await page.textContent('#model-name'), 'llama-tiny');
  await page.fill('#temperature', '0');
  await page.fill('#max_tokens', '12');
  await page.fill('#input', 'Tell me about cats.');
  await page.press('#input', 'Enter');
  await page.waitForSelector('#status:has-text("tokens/s, first after")');
  const reply = await page.textContent('.msg.assistant');
  // the reply is what the API gives for the same conversation
  const api = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama-tiny', messages: [{ role: 'user', content: 'Tell me about cats.' }], temperature: 0, max_tokens: 12, top_p: 1 }) });
  const body = (await api.json()) as { choices: { message: { content: string } }[] };
  assert.equal(reply, body.choices[0].message.content);
  assert.match((await page.textContent('#status'))!, /^12 tokens, [\d.]+ tokens\/s/);
  assert.equal(await page.locator('.msg.user').count(), 1);
  if (process.env.PEREGRINE_SCREENSHOT) await page.screenshot({ path: process.env.PEREGRINE_SCREENSHOT });
  assert.deepEqual(errors, []);
});
