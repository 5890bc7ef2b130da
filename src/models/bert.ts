// BERT, RoBERTa and XLM-RoBERTa: one encoder stack (encoder-stack.ts) under the "bert." or "roberta." prefix, with
// whatever head the checkpoint carries. RoBERTa differs in its position ids, which start at padding_idx + 1 (Hugging
// Face's create_position_ids_from_input_ids; the rows before are never used), its one token type, and its heads'
// names (classifier.dense/out_proj, lm_head with gelu).
import { fail } from '../errors.js';
import type { ModelDir } from '../loaders/model-dir.js';
import type { Backend } from '../ops/backend.js';
import { ConfigReader, divides } from './config.js';
import { createStack, familyClasses, stackInfo, taskOf, type StackConfig, type StackNames } from './encoder-stack.js';
import type { Architecture, Encoder } from './model.js';
import { Checkpoint, detectPrefix } from './weights.js';

interface Family {
  name: string;
  stem: string;
  heads: string[];
  modelTypes: string[];
  prefix: string;
  roberta: boolean;
}

/**
 * Every field of BertConfig / RobertaConfig that changes what is computed (dropout does not at inference;
 * add_cross_attention does not without encoder states): layer_norm_eps, hidden_act (any name in activations.ts),
 * type_vocab_size, is_decoder (causal attention), tie_word_embeddings (the LM decoder), and RoBERTa's
 * pad_token_id (where positions start); refused: position_embedding_type other than absolute (relative_key and
 * relative_key_query add learned distance embeddings to the scores) and a non-empty pruned_heads.
 */
function readConfig(f: Family, raw: Record<string, unknown>, className: string): StackConfig {
  const c = new ConfigReader(raw, `${f.name} config`);
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  divides(`${f.name} config`, 'hidden_size', hidden, heads);
  if (c.string('position_embedding_type', 'absolute') !== 'absolute') c.unsupported('position_embedding_type', 'only absolute position embeddings');
  c.noPrunedHeads();
  const task = taskOf(className);
  const positionRows = c.int('max_position_embeddings');
  const padding = f.roberta ? c.optionalInt('pad_token_id') ?? 1 : 0;
  const positionOffset = f.roberta ? padding + 1 : 0;
  if (positionOffset >= positionRows) {
    fail('bad-config', `${f.name} config: pad_token_id (${padding}) leaves no positions of max_position_embeddings (${positionRows}): positions start at pad_token_id + 1; fix config.json`);
  }
  return {
    vocab: c.int('vocab_size'), hidden, layers: c.int('num_hidden_layers'), heads, inner: c.int('intermediate_size'),
    positionRows, positionOffset, typeVocab: c.int('type_vocab_size', 2), eps: c.number('layer_norm_eps', 1e-12),
    act: c.activation('hidden_act', 'gelu'), task,
    labels: task === 'sequence-classification' || task === 'token-classification' ? c.labels() : [],
    causal: c.bool('is_decoder', false),
  };
}

function names(f: Family, prefix: string, cfg: StackConfig, raw: Record<string, unknown>): StackNames {
  const tied = new ConfigReader(raw, `${f.name} config`).bool('tie_word_embeddings', true);
  const p = prefix;
  return {
    word: p + 'embeddings.word_embeddings', position: p + 'embeddings.position_embeddings', types: p + 'embeddings.token_type_embeddings',
    embNorm: p + 'embeddings.LayerNorm',
    layer: (l) => {
      const x = `${p}encoder.layer.${l}.`;
      return {
        q: x + 'attention.self.query', k: x + 'attention.self.key', v: x + 'attention.self.value',
        attnOut: x + 'attention.output.dense', attnNorm: x + 'attention.output.LayerNorm',
        fc1: x + 'intermediate.dense', fc2: x + 'output.dense', outNorm: x + 'output.LayerNorm',
      };
    },
    sequence: f.roberta ? { dense: 'classifier.dense', act: 'tanh', out: 'classifier.out_proj' } : { dense: p + 'pooler.dense', act: 'tanh', out: 'classifier' },
    tokens: 'classifier',
    // RoBERTa's LM head applies gelu whatever hidden_act says; BERT's applies hidden_act. The decoder adds
    // decoder.bias, which transformers 5 keeps apart from the head's bias when the decoder is untied (older
    // checkpoints hold both, equal)
    lm: f.roberta
      ? { dense: 'lm_head.dense', act: 'gelu', norm: 'lm_head.layer_norm', eps: cfg.eps, decoder: tied ? null : 'lm_head.decoder', bias: ['lm_head.decoder.bias', 'lm_head.bias'] }
      : { dense: 'cls.predictions.transform.dense', act: cfg.act, norm: 'cls.predictions.transform.LayerNorm', eps: cfg.eps,
        decoder: tied ? null : 'cls.predictions.decoder', bias: ['cls.predictions.decoder.bias', 'cls.predictions.bias'] },
  };
}

function untied(raw: Record<string, unknown>): boolean {
  return raw.tie_word_embeddings === false;
}

function architecture(f: Family): Architecture {
  return {
    classNames: familyClasses(f.stem, f.heads),
    modelTypes: f.modelTypes,
    kind: 'encoder',
    info: (raw, className) => stackInfo(className, readConfig(f, raw, className), untied(raw)),
    cacheWidth: (raw) => readConfig(f, raw, f.stem + 'Model').hidden,
    create(backend: Backend, dir: ModelDir, className: string): Encoder {
      const cfg = readConfig(f, dir.config, className);
      const prefix = detectPrefix(dir.weights, [f.prefix, ''], 'embeddings.word_embeddings.weight', f.name);
      const ckpt = new Checkpoint(dir.weights, '', `hidden_size=${cfg.hidden}, num_hidden_layers=${cfg.layers}, vocab_size=${cfg.vocab}, num_labels=${cfg.labels.length}`);
      return createStack(backend, ckpt, cfg, names(f, prefix, cfg, dir.config), stackInfo(className, cfg, untied(dir.config)));
    },
  };
}

const HEADS = ['ForSequenceClassification', 'ForTokenClassification', 'ForMaskedLM', 'ForQuestionAnswering', 'ForMultipleChoice'];

export const bert = architecture({
  name: 'BERT', stem: 'Bert', modelTypes: ['bert'], prefix: 'bert.', roberta: false,
  heads: [...HEADS, 'LMHeadModel', 'ForPreTraining', 'ForNextSentencePrediction'],
});
export const roberta = architecture({ name: 'RoBERTa', stem: 'Roberta', modelTypes: ['roberta'], prefix: 'roberta.', roberta: true, heads: [...HEADS, 'ForCausalLM'] });
export const xlmRoberta = architecture({
  name: 'XLM-RoBERTa', stem: 'XLMRoberta', modelTypes: ['xlm-roberta'], prefix: 'roberta.', roberta: true, heads: [...HEADS, 'ForCausalLM'],
});
