// The fuzz targets: one per file format Peregrine reads, the command line and the server's requests.
import { cliFlagsTarget, cliSpawnTarget } from './cli.js';
import { ggufTarget } from './gguf.js';
import type { Target } from './harness.js';
import { bertConfigTarget, gpt2ConfigTarget, indexTarget } from './model-dir.js';
import { safetensorsTarget } from './safetensors.js';
import { serverTarget } from './server.js';
import { tokenizerTarget } from './tokenizer.js';
import { torchBinTarget } from './torch-bin.js';

export function targets(): Target[] {
  return [safetensorsTarget, ggufTarget, torchBinTarget, indexTarget, gpt2ConfigTarget, bertConfigTarget, tokenizerTarget, cliFlagsTarget, cliSpawnTarget, serverTarget];
}
