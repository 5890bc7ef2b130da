// One file from the hub into the cache: resumable download to `{file}.incomplete`, size and hash
// checks while streaming, rename into place only when the checks pass.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, statSync, unlinkSync, renameSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { SingleBar } from 'cli-progress';
import { PeregrineError } from '../errors.js';

/** What the hub metadata says about one file. */
export interface HubFile {
  name: string;       // rfilename
  size?: number;      // lfs.size or size
  sha256?: string;    // LFS files
  blobId?: string;    // git blob sha1, non-LFS files
}

export interface FetchOptions {
  headers: Record<string, string>;
  progress: boolean;
  /** how long to wait for the response headers, and then for each chunk of the body */
  timeoutSeconds: number;
}

/**
 * Connect and read timeouts for one request: armed before the request and again before each chunk is
 * awaited; when it fires, the request (or its body) is aborted and `fired` says why.
 */
export class Deadline {
  readonly controller = new AbortController();
  fired = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly seconds: number) {}

  arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort();
    }, this.seconds * 1000);
  }

  clear(): void {
    clearTimeout(this.timer);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }
}

/** How to give a slow hub more time, for error messages. */
export const TIMEOUT_HINT = 'raise --hub-timeout (PEREGRINE_HUB_TIMEOUT, seconds)';

const FS_WRITE_CODES = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'ENOTDIR', 'EISDIR']);

/** A one-line error for a filesystem failure while writing into the cache. */
export function cacheWriteError(err: unknown, path: string): Error {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code && FS_WRITE_CODES.has(code)) {
    return new PeregrineError('cache', `cannot write to the model cache at ${path} (${code}); free some disk space, fix its permissions, or set PEREGRINE_CACHE to a writable directory`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

function sizeOf(path: string): number {
  try { return statSync(path).size; } catch { return -1; }
}

function removeQuietly(path: string): void {
  try { unlinkSync(path); } catch { /* already gone */ }
}

function humanBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** The hashes a file is checked against, fed incrementally. */
class Checker {
  private sha256?: Hash;
  private sha1?: Hash;
  constructor(private readonly file: HubFile) { this.reset(); }
  reset(): void {
    this.sha256 = this.file.sha256 ? createHash('sha256') : undefined;
    this.sha1 = this.file.blobId && this.file.size !== undefined ? createHash('sha1').update(`blob ${this.file.size}\0`) : undefined;
  }
  update(chunk: Uint8Array): void {
    this.sha256?.update(chunk);
    this.sha1?.update(chunk);
  }
  /** Returns a description of the first mismatch, or undefined when the file is good. */
  verify(got: number): string | undefined {
    const f = this.file;
    if (f.size !== undefined && got !== f.size) return `size mismatch (expected ${f.size} bytes, got ${got})`;
    if (this.sha256) {
      const h = this.sha256.digest('hex');
      if (h !== f.sha256) return `sha256 mismatch (expected ${f.sha256}, got ${h})`;
    }
    if (this.sha1) {
      const h = this.sha1.digest('hex');
      if (h !== f.blobId) return `git blob id mismatch (expected ${f.blobId}, got ${h})`;
    }
    return undefined;
  }
}

async function hashExisting(path: string, checker: Checker): Promise<void> {
  for await (const chunk of createReadStream(path)) checker.update(chunk as Buffer);
}

/** Downloads `url` into `dest` (via `dest.incomplete`), resuming a partial download when one exists. */
export async function downloadFile(url: string, dest: string, file: HubFile, opts: FetchOptions): Promise<void> {
  const partial = `${dest}.incomplete`;
  let have = Math.max(0, sizeOf(partial));
  if (file.size !== undefined && have > file.size) { removeQuietly(partial); have = 0; }
  const checker = new Checker(file);

  let res: Response | undefined;
  const deadline = new Deadline(opts.timeoutSeconds);
  if (!(file.size !== undefined && have === file.size && have > 0)) {
    const headers = { ...opts.headers, ...(have > 0 ? { Range: `bytes=${have}-` } : {}) };
    try {
      deadline.arm();
      res = await fetch(url, { headers, redirect: 'follow', signal: deadline.signal });
      if (res.status === 416 && have > 0) { // the partial file is no prefix we can continue: start over
        await res.body?.cancel();
        removeQuietly(partial);
        have = 0;
        deadline.arm();
        res = await fetch(url, { headers: opts.headers, redirect: 'follow', signal: deadline.signal });
      }
    } catch (err) {
      const why = deadline.fired ? `no answer within ${deadline.seconds} s` : reason(err);
      throw new PeregrineError('download', `downloading ${file.name} from ${url} failed (${why}); check the network and run the command again${deadline.fired ? `, or ${TIMEOUT_HINT}` : ''}`);
    } finally {
      deadline.clear(); // armed again while the body is read
    }
    if (!res.ok) {
      await res.body?.cancel();
      const hint = res.status === 401 || res.status === 403 ? 'set HF_TOKEN if the model is private or gated' : 'run the command again later';
      throw new PeregrineError('download', `downloading ${file.name} from ${url} failed (HTTP ${res.status}); ${hint}`);
    }
    if (have > 0 && (res.status !== 206 || !(res.headers.get('content-range') ?? '').startsWith(`bytes ${have}-`))) {
      have = 0; // the server ignored the range: start over
    }
  }
  if (have > 0) await hashExisting(partial, checker);

  let fh: FileHandle;
  try {
    fh = await open(partial, have > 0 ? 'a' : 'w');
  } catch (err) {
    await res?.body?.cancel();
    throw cacheWriteError(err, partial);
  }
  const bar = opts.progress ? await startBar(file, have) : undefined;
  let got = have;
  try {
    if (res?.body) {
      const started = Date.now();
      deadline.arm();
      for await (const chunk of res.body) {
        deadline.clear(); // writing to disk is not the hub's time
        got += chunk.byteLength;
        if (file.size !== undefined && got > file.size) break; // checked below
        checker.update(chunk);
        await fh.write(chunk);
        const secs = Math.max((Date.now() - started) / 1000, 0.001);
        bar?.update(got, { done: humanBytes(got), speed: `${humanBytes((got - have) / secs)}/s` });
        deadline.arm();
      }
    }
  } catch (err) {
    const e = cacheWriteError(err, partial);
    if (e instanceof PeregrineError) throw e;
    if (deadline.fired) {
      throw new PeregrineError('download', `no data for ${deadline.seconds} s while downloading ${file.name} (${got} of ${file.size ?? '?'} bytes); the partial file is kept, run the command again to resume, or ${TIMEOUT_HINT}`);
    }
    throw new PeregrineError('download', `the connection broke while downloading ${file.name} (${got} of ${file.size ?? '?'} bytes, ${reason(err)}); the partial file is kept, run the command again to resume`);
  } finally {
    deadline.clear();
    bar?.stop();
    await fh.close();
  }

  const problem = checker.verify(got);
  if (problem) {
    removeQuietly(partial);
    throw new PeregrineError('download', `downloaded ${file.name} is corrupt: ${problem}; the partial file was deleted, run the command again to re-download`);
  }
  try {
    renameSync(partial, dest);
  } catch (err) {
    throw cacheWriteError(err, dest);
  }
}

/** A progress bar on stderr (cli-progress is imported here: a cached model never needs it). */
async function startBar(file: HubFile, have: number): Promise<SingleBar> {
  const { default: cliProgress } = await import('cli-progress');
  const total = file.size ?? 0;
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: '{file} |{bar}| {percentage}% | {done} / {size} | {speed}',
    hideCursor: true,
    noTTYOutput: !process.stderr.isTTY,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, have, { file: file.name, done: humanBytes(have), size: humanBytes(total), speed: '' });
  return bar;
}

/** A short reason for a failed fetch (undici hides the useful part in `cause`). */
export function reason(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

/** True when a final file from an earlier, interrupted run is already in place with the right size. */
export function alreadyThere(dest: string, file: HubFile): boolean {
  return existsSync(dest) && (file.size === undefined || sizeOf(dest) === file.size);
}
