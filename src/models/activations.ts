// Hugging Face's activation names (ACT2FN in transformers/activations.py, as configs spell them in
// activation_function or hidden_act) and the op-set activation each one is. A name missing here is refused
// by name: one activation silently computed as another gives plausible, wrong outputs.
import type { Activation } from '../ops/backend.js';

export const HF_ACTIVATIONS: Readonly<Record<string, Activation>> = {
  gelu: 'gelu',
  gelu_python: 'gelu',
  // the tanh approximation, written four ways (gelu_fast rounds sqrt(2 / pi) to 0.7978845608: 1e-11 apart)
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  gelu_accurate: 'gelu_tanh',
  quick_gelu: 'quick_gelu',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
  tanh: 'tanh',
  linear: 'none',
};
