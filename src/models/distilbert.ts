// DistilBERT: BERT's encoder stack (encoder-stack.ts) under its own names ("distilbert." prefix, q_lin ... out_lin,
// sa_layer_norm, ffn.lin1/lin2), without token types, LayerNorm epsilon fixed at 1e-12; its heads are
// pre_classifier + ReLU + classifier, a token classifier, and vocab_transform/vocab_layer_norm/vocab_projector.
import type { ModelDir } from '../loaders/model-dir.js';
import type { Backend } from '../ops/backend.js';
import { ConfigReader, divides } from './config.js';
import { createStack, familyClasses, stackInfo, taskOf, type StackConfig, type StackNames } from './encoder-stack.js';
import type { Architecture, Encoder } from './model.js';
import { Checkpoint, detectPrefix } from './weights.js';

const WHERE = 'DistilBERT config';
const EPS = 1e-12;

/**
 * The fields of DistilBertConfig that change what is computed: dim, hidden_dim, n_layers, n_heads, activation,
 * max_position_embeddings, tie_word_embeddings; refused: sinusoidal_pos_embds (fixed sinusoidal positions, not
 * implemented) and a non-empty pruned_heads.
 */
function readConfig(raw: Record<string, unknown>, className: string): StackConfig {
  const c = new ConfigReader(raw, WHERE);
  const hidden = c.int('dim');
  const heads = c.int('n_heads');
  divides(WHERE, 'dim', hidden, heads);
  if (c.bool('sinusoidal_pos_embds', false)) c.unsupported('sinusoidal_pos_embds', 'only learned position embeddings');
  c.noPrunedHeads();
  const task = taskOf(className);
  return {
    vocab: c.int('vocab_size'), hidden, layers: c.int('n_layers'), heads, inner: c.int('hidden_dim'),
    positionRows: c.int('max_position_embeddings'), positionOffset: 0, typeVocab: 0, eps: EPS, act: c.activation('activation', 'gelu'), task,
    labels: task === 'sequence-classification' || task === 'token-classification' ? c.labels() : [], causal: false,
  };
}

function names(p: string, cfg: StackConfig, raw: Record<string, unknown>): StackNames {
  const tied = new ConfigReader(raw, WHERE).bool('tie_word_embeddings', true);
  return {
    word: p + 'embeddings.word_embeddings', position: p + 'embeddings.position_embeddings', types: null, embNorm: p + 'embeddings.LayerNorm',
    layer: (l) => {
      const x = `${p}transformer.layer.${l}.`;
      return {
        q: x + 'attention.q_lin', k: x + 'attention.k_lin', v: x + 'attention.v_lin', attnOut: x + 'attention.out_lin',
        attnNorm: x + 'sa_layer_norm', fc1: x + 'ffn.lin1', fc2: x + 'ffn.lin2', outNorm: x + 'output_layer_norm',
      };
    },
    sequence: { dense: 'pre_classifier', act: 'relu', out: 'classifier' },
    tokens: 'classifier',
    lm: { dense: 'vocab_transform', act: cfg.act, norm: 'vocab_layer_norm', eps: EPS, decoder: tied ? null : 'vocab_projector', bias: ['vocab_projector.bias'] },
  };
}

const untied = (raw: Record<string, unknown>) => raw.tie_word_embeddings === false;

export const distilbert: Architecture = {
  classNames: familyClasses('DistilBert', ['ForSequenceClassification', 'ForTokenClassification', 'ForMaskedLM', 'ForQuestionAnswering', 'ForMultipleChoice']),
  modelTypes: ['distilbert'],
  kind: 'encoder',
  info: (raw, className) => stackInfo(className, readConfig(raw, className), untied(raw)),
  cacheWidth: (raw) => readConfig(raw, 'DistilBertModel').hidden,
  create(backend: Backend, dir: ModelDir, className: string): Encoder {
    const cfg = readConfig(dir.config, className);
    const prefix = detectPrefix(dir.weights, ['distilbert.', ''], 'embeddings.word_embeddings.weight', 'DistilBERT');
    const ckpt = new Checkpoint(dir.weights, '', `dim=${cfg.hidden}, n_layers=${cfg.layers}, vocab_size=${cfg.vocab}, num_labels=${cfg.labels.length}`);
    return createStack(backend, ckpt, cfg, names(prefix, cfg, dir.config), stackInfo(className, cfg, untied(dir.config)));
  },
};
