// Paths of the committed fixtures (test/fixtures, next to the compiled dist/test).
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** Whether this machine has an NVIDIA driver (some CPU-suite tests are about machines without one). */
export function hasGpuDriver(): boolean {
  try {
    koffi.load('libcuda.so.1');
    return true;
  } catch {
    return false;
  }
}

export function fixture(name: string): string {
  return join(FIXTURES, name);
}

export function reference<T = any>(name: string, file = 'reference.json'): T {
  return JSON.parse(readFileSync(join(FIXTURES, name, file), 'utf8')) as T;
}

/**
 * The causal-LM fixtures: GPT-2 (make_fixtures.py) and the Llama family (make_llama_fixtures.py: grouped- and
 * multi-query attention, head sizes apart from hidden / heads, a sliding window, q/k/v biases, Qwen3's head
 * norms, tied and untied heads, and every rope scaling).
 */
export const CAUSAL_FIXTURES = ['gpt2-tiny', 'gpt2-wide', 'llama-tiny', 'llama3-tiny', 'mistral-tiny', 'qwen2-tiny', 'qwen3-tiny',
  'llama-rope-linear', 'llama-rope-dynamic', 'llama-rope-yarn', 'llama-awq-tiny', 'llama-gptq-tiny', 'gpt2-gptq-tiny'];

/** What tools/reference/make_bert_family_fixtures.py stores: inputs run as one padded batch and Hugging Face's outputs. */
export interface FamilyRef {
  inputs: { text: string; ids: number[] }[];
  mean: number[][];
  hidden?: number[][][];
  cls?: number[][];
  max?: number[][];
  mean_normalized?: number[][];
  logits?: number[][];
  token_logits?: number[][][];
  lm_rows?: { input: number; position: number; logits: number[] }[];
  fill_mask?: { input: number; position: number; ids: number[]; scores: number[] }[];
  /** how far Hugging Face's own fp16 and bf16 runs land from these fp32 outputs (the worst compared tensor) */
  hf_dtype_error?: { f16: number; bf16: number };
}

/** The BERT-family fixtures (make_bert_family_fixtures.py), with the Hugging Face class each was saved as. */
export const FAMILY_FIXTURES: [string, string][] = [
  ['bert-mlm', 'BertForMaskedLM'], ['bert-pretraining', 'BertForPreTraining'], ['bert-lmhead', 'BertLMHeadModel'],
  ['bert-ner', 'BertForTokenClassification'], ['roberta-mlm', 'RobertaForMaskedLM'], ['roberta-cls', 'RobertaForSequenceClassification'],
  ['xlmr', 'XLMRobertaModel'], ['distilbert-mlm', 'DistilBertForMaskedLM'], ['distilbert-cls', 'DistilBertForSequenceClassification'],
  ['st-mini', 'BertModel'],
];
