// config.json's quantization_config: the AWQ and GPTQ int4 checkpoints of the hub run as they are stored
// (loaders/int4.ts); every other method, and every setting that changes what the stored numbers mean beyond what
// Peregrine reads, is refused by name.
import { fail, show } from '../errors.js';
import { INT4_GROUPS, int4Type } from '../loaders/int4.js';
import type { QuantScheme } from '../loaders/schemes.js';
import { ConfigReader } from './config.js';

const WHERE = 'config.json quantization_config';

/** The scheme config.json names, null where it has no quantization_config. */
export function quantScheme(config: Record<string, unknown>): QuantScheme | null {
  const raw = config.quantization_config;
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) fail('bad-config', `${WHERE} must be an object, got ${show(raw)}; fix config.json`);
  const q = raw as Record<string, unknown>;
  const c: ConfigReader = new ConfigReader(q, WHERE);
  const method = c.string('quant_method', '');
  if (method === 'smoothquant') {
    if (c.string('format', '') !== 'peregrine') c.unsupported('format', 'Peregrine reads the SmoothQuant checkpoints `peregrine quantize --method smoothquant` writes (format "peregrine")');
    if (c.int('bits', 8) !== 8) c.unsupported('bits', 'SmoothQuant runs int8 weights');
    return { method, alpha: c.number('alpha', 0.5) };
  }
  if (method !== 'awq' && method !== 'gptq') {
    c.unsupported('quant_method', 'Peregrine runs AWQ and GPTQ int4 checkpoints and its own SmoothQuant W8A8 ones, and quantizes fp16/bf16 ones with --quantize int8 or int4');
  }
  const bitsKey = q.bits === undefined && q.w_bit !== undefined ? 'w_bit' : 'bits';
  if (c.int(bitsKey, 4) !== 4) c.unsupported(bitsKey, 'Peregrine runs 4-bit AWQ and GPTQ weights');
  const groupKey = q.group_size === undefined && q.q_group_size !== undefined ? 'q_group_size' : 'group_size';
  const group = q[groupKey];
  const type = typeof group === 'number' ? int4Type(group) : undefined;
  if (type === undefined) c.unsupported(groupKey, 'Peregrine runs groups of 32, 64 or 128 inputs');
  if (method === 'awq') {
    if (!c.bool('zero_point', true)) c.unsupported('zero_point', 'Peregrine runs AWQ with zero points, as AutoAWQ writes it');
    if (c.string('version', 'gemm').toLowerCase() !== 'gemm') c.unsupported('version', 'Peregrine reads the GEMM packing of AWQ weights');
    return { method, type, zerosMinusOne: false };
  }
  if (c.bool('is_marlin_format', false)) c.unsupported('is_marlin_format', 'Peregrine reads GPTQ weights as AutoGPTQ packs them, not repacked for Marlin');
  const dynamic = q.dynamic;
  if (dynamic !== undefined && dynamic !== null && (typeof dynamic !== 'object' || Object.keys(dynamic).length > 0)) {
    c.unsupported('dynamic', 'every quantized layer must have the same bits and group size');
  }
  const format = c.string('checkpoint_format', 'gptq');
  if (format !== 'gptq' && format !== 'gptq_v2') c.unsupported('checkpoint_format', 'Peregrine reads "gptq" and "gptq_v2"');
  return { method, type, zerosMinusOne: format === 'gptq' };
}

/** What `peregrine inspect` says of a scheme. */
export function schemeName(s: QuantScheme): string {
  if (s.method === 'smoothquant') return `smoothquant W8A8 (int8 weights per output channel, int8 activations per token; alpha ${s.alpha}) (quantization_config)`;
  return `${s.method} int4 in groups of ${INT4_GROUPS[s.type]} (quantization_config)`;
}
