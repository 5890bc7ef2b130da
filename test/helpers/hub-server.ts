// A local stand-in for huggingface.co: serves the hub's metadata and resolve URLs for fake repos,
// redirects LFS files to a "CDN" path, honours Range, and can misbehave on request.

import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface FakeRepo {
  sha: string;                         // commit sha
  files: Record<string, Buffer>;
  lfs: Set<string>;                    // files stored in LFS (served by redirect)
}

export interface LoggedRequest { url: string; range?: string }

export class HubServer {
  readonly repos = new Map<string, FakeRepo>();
  readonly log: LoggedRequest[] = [];
  /** Files (by name) whose next response is cut off after half of the bytes. */
  readonly breakOnce = new Set<string>();
  /** Files (by name) served with wrong bytes of the right length. */
  readonly corrupt = new Set<string>();
  /** Files (by name) whose next response sends half of the bytes, then nothing more (the connection stays open). */
  readonly stallOnce = new Set<string>();
  /** While true, every request is accepted and never answered. */
  silent = false;
  private server?: Server;
  endpoint = '';

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.endpoint;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = undefined;
  }

  /** Requests for file contents (resolve or CDN), not metadata. */
  fileRequests(): LoggedRequest[] {
    return this.log.filter((r) => !r.url.startsWith('/api/'));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const range = req.headers.range;
    this.log.push({ url: url.pathname, ...(range ? { range } : {}) });
    if (this.silent) return;

    const meta = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (meta) {
      const repo = this.repos.get(meta[1]);
      if (!repo) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Repository not found"}');
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(metadata(meta[1], repo)));
    }
    const resolve = /^\/(.+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve) {
      const repo = this.repos.get(resolve[1]);
      const name = decodeURIComponent(resolve[3]);
      const body = repo?.files[name];
      if (!repo || !body || (resolve[2] !== repo.sha && resolve[2] !== 'main')) return void res.writeHead(404).end('Entry not found');
      if (repo.lfs.has(name)) {
        return void res.writeHead(302, { location: `/cdn/${encodeURIComponent(resolve[1])}/${encodeURIComponent(name)}` }).end();
      }
      return this.send(req, res, name, body);
    }
    const cdn = /^\/cdn\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const body = cdn && this.repos.get(decodeURIComponent(cdn[1]))?.files[decodeURIComponent(cdn[2])];
    if (cdn && body) return this.send(req, res, decodeURIComponent(cdn[2]), body);
    res.writeHead(404).end('not found');
  }

  private send(req: IncomingMessage, res: ServerResponse, name: string, full: Buffer): void {
    let body = full;
    if (this.corrupt.has(name)) body = Buffer.from(full.map((b) => b ^ 0xff));
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      start = Number(m[1]);
      if (start >= body.length) return void res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    } else {
      res.writeHead(200, { 'content-length': body.length });
    }
    const rest = body.subarray(start);
    if (this.stallOnce.delete(name)) return void res.write(rest.subarray(0, rest.length >> 1));
    if (this.breakOnce.delete(name)) {
      res.write(rest.subarray(0, rest.length >> 1), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(rest);
  }
}

function gitBlobId(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

/** The JSON of GET /api/models/{repo}/revision/{rev}?blobs=true, as huggingface.co shapes it. */
function metadata(id: string, repo: FakeRepo): unknown {
  return {
    id,
    sha: repo.sha,
    siblings: Object.entries(repo.files).map(([rfilename, content]) => {
      if (!repo.lfs.has(rfilename)) return { rfilename, size: content.length, blobId: gitBlobId(content) };
      const sha256 = createHash('sha256').update(content).digest('hex');
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${content.length}\n`);
      return { rfilename, size: content.length, blobId: gitBlobId(pointer), lfs: { sha256, size: content.length, pointerSize: pointer.length } };
    }),
  };
}

export function fakeSha(): string {
  return randomBytes(20).toString('hex');
}

export function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2));
}

/** The small files every fake model has. */
export function baseFiles(): Record<string, Buffer> {
  return {
    'config.json': json({ model_type: 'gpt2', n_layer: 2, n_embd: 8 }),
    'tokenizer.json': json({ version: '1.0', model: { type: 'BPE', vocab: { a: 0 }, merges: [] } }),
    'tokenizer_config.json': json({ model_max_length: 1024 }),
    'README.md': Buffer.from('# fake model\n'),
  };
}

/** A fake repo of a directory's files (subdirectories included, names with '/'), weights in LFS, with `extra` files added or replaced. */
export function repoFromDir(dir: string, extra: Record<string, Buffer> = {}, skip: string[] = []): FakeRepo {
  const files: Record<string, Buffer> = {};
  const walk = (sub: string): void => {
    for (const entry of readdirSync(join(dir, sub))) {
      const name = sub ? `${sub}/${entry}` : entry;
      if (statSync(join(dir, name)).isDirectory()) walk(name); // fixtures link shared files: followed
      else if (!skip.includes(name)) files[name] = readFileSync(join(dir, name));
    }
  };
  walk('');
  Object.assign(files, extra);
  return { sha: fakeSha(), files, lfs: new Set(Object.keys(files).filter((f) => /\.(bin|safetensors|pt)$/.test(f))) };
}
