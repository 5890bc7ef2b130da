// peregrine serve: load the models, listen, and on SIGTERM or SIGINT drain (running requests finish, new ones
// get 503) before exiting. A second signal exits at once.
import { loadModel, type LoadOptions } from '../engine/load.js';
import { fail } from '../errors.js';
import { createServer, type ServerOptions } from '../server/app.js';
import type { Served } from '../server/models.js';

export interface ServeFlags {
  host: string;
  port: number;
  apiKey?: string;
  maxQueue?: number;
  maxBodyBytes?: number;
  streamInterval?: number;
  servedModelName?: string[];
}

/** A model's name in requests: the path or hub id as given, without a trailing slash. */
const modelId = (m: string) => m.replace(/\/+$/, '') || m;

export async function runServe(names: string[], load: LoadOptions, o: ServeFlags): Promise<void> {
  const ids = o.servedModelName ?? [];
  if (ids.length > names.length) fail('bad-argument', `${ids.length} --served-model-name for ${names.length} -m; give at most one name per model, in the same order`);
  const idOf = (i: number) => ids[i] ?? modelId(names[i]);
  const dup = names.map((_, i) => idOf(i)).find((id, i, all) => all.indexOf(id) !== i);
  if (dup !== undefined) fail('bad-argument', `two models would be served as ${dup}; give them different --served-model-name`);
  const served: Served[] = [];
  try {
    for (const [i, name] of names.entries()) {
      const loaded = await loadModel(name, load);
      const created = Math.floor(Date.now() / 1000);
      served.push(loaded.kind === 'causal-lm' ? { id: idOf(i), created, kind: 'causal-lm', generator: loaded.generator } : { id: idOf(i), created, kind: 'encoder', embedder: loaded.embedder });
    }
  } catch (err) {
    for (const m of served) (m.generator ?? m.embedder)!.dispose();
    throw err;
  }
  const options: ServerOptions = { apiKey: o.apiKey ?? process.env.PEREGRINE_API_KEY, maxQueue: o.maxQueue, bodyLimit: o.maxBodyBytes, streamInterval: o.streamInterval };
  const server = createServer(served, options);
  const address = await server.listen(o.port, o.host);
  process.stderr.write(`peregrine: serving ${served.map((m) => m.id).join(', ')} at ${address} (OpenAI API under /v1, a chat page at /)\n`);
  await new Promise<void>((resolve, reject) => {
    let closing = false;
    const stop = (signal: NodeJS.Signals) => {
      if (closing) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
      closing = true;
      process.stderr.write(`peregrine: ${signal}: finishing ${server.state.admission.inFlight} running sequences, then exiting\n`);
      server.close().then(resolve, reject);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
