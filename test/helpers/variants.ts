// The config variants the tests run (test/config.test.ts on the CPU, test/gpu/config.test.ts on the GPU):
// config changes, and whether the Hugging Face result must differ from the unmodified model's.
export type Variant = [name: string, changes: Record<string, unknown>, differs: boolean];

export const GPT2_VARIANTS: Variant[] = [
  ['scale_attn_weights false', { scale_attn_weights: false }, true],
  ['scale_attn_by_inverse_layer_idx', { scale_attn_by_inverse_layer_idx: true }, true],
  ['both attention scales', { scale_attn_weights: false, scale_attn_by_inverse_layer_idx: true }, true],
  // fp32 scores and softmax: what Peregrine's attention computes anyway
  ['reorder_and_upcast_attn', { reorder_and_upcast_attn: true, scale_attn_by_inverse_layer_idx: true }, true],
  ['layer_norm_epsilon 0.5', { layer_norm_epsilon: 0.5 }, true],
  ...['gelu', 'gelu_python', 'quick_gelu', 'relu', 'silu', 'swish', 'tanh', 'linear'].map((a): Variant => [`activation_function ${a}`, { activation_function: a }, true]),
  // the tanh approximation under other names
  ...['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'gelu_accurate'].map((a): Variant => [`activation_function ${a}`, { activation_function: a }, false]),
];

export const BERT_VARIANTS: Variant[] = [
  ['defaults (gelu, eps 1e-12)', {}, false],
  ['layer_norm_eps 0.5', { layer_norm_eps: 0.5 }, true],
  ...['gelu_new', 'relu', 'silu', 'quick_gelu'].map((a): Variant => [`hidden_act ${a}`, { hidden_act: a }, true]),
];
