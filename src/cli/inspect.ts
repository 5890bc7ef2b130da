// Human-readable output of `peregrine inspect`.
import { formatBytes } from '../engine/fit.js';
import type { Inspection } from '../engine/load.js';

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function formatInspection(r: Inspection): string {
  const i = r.info;
  const lines = [
    `model         ${r.dir}`,
    `architecture  ${i.architecture} (${i.kind})`,
    `shape         ${i.layers} layers, hidden ${i.hidden}, ${i.heads} heads, vocab ${i.vocabSize}, ${i.maxPositions} positions`,
    `parameters    ${formatCount(i.parameters)} (${i.parameters})`,
    `stored dtypes ${r.dtypes.map((d) => `${d.dtype}: ${formatCount(d.params)} values, ${formatBytes(d.bytes)}`).join('; ')}`,
    ...(r.quantization ? [`quantization  ${r.quantization}`] : []),
    `memory plan   ${r.device}, ${r.dtype}, for ${Object.entries(r.memory.capacity).map(([k, v]) => `${k} ${v}`).join(', ')}`,
  ];
  let total = 0;
  for (const region of r.memory.regions) {
    lines.push(`  ${region.name.padEnd(12)} ${formatBytes(region.bytes)}`);
    total += region.bytes;
  }
  lines.push(`  ${'total'.padEnd(12)} ${formatBytes(total)}`);
  const c = r.memory.capacity;
  if (c.kvBlocks !== undefined) {
    const kv = r.memory.regions.find((x) => x.name === 'kv-cache')!.bytes;
    lines.push(`kv-cache pool ${c.kvBlocks - 1} blocks of ${c.blockSize} tokens (block 0 reserved for padding rows): ${c.kvTokens} tokens, ` +
      `${formatBytes(kv / c.kvBlocks)} per block; ${c.maxBatch} sequences at once, up to ${c.maxSeqLen} tokens each, prefill ${c.prefillChunk} tokens per pass`);
  }
  if (r.memory.buffers.length) {
    lines.push('activation arena (buffers with disjoint lifetimes share bytes)');
    for (const b of r.memory.buffers) {
      lines.push(`  ${b.name.padEnd(10)} [${b.shape.join(', ')}] ${b.dtype}  offset ${formatBytes(b.offset)}, ${formatBytes(b.bytes)}`);
    }
  }
  return lines.join('\n') + '\n';
}
