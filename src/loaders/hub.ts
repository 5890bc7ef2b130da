// Model directories from the Hugging Face hub: a hub id ("gpt2", "openai-community/gpt2") is downloaded
// into a local cache laid out like huggingface_hub's, and found there again (also offline).
//
//   {cacheDir}/models--{owner}--{name}/refs/{revision}          the commit sha the revision pointed to
//   {cacheDir}/models--{owner}--{name}/snapshots/{sha}/{files}  the files of that commit
//   .../snapshots/{sha}/.peregrine-complete                     written last: JSON list of files and sizes
//
// A snapshot holds what the local loaders read (hub-plan.ts picks it from the repo's file list).

import { mkdirSync, readFileSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { PeregrineError } from '../errors.js';
import { CONFIG, planFiles } from './hub-plan.js';
import { alreadyThere, cacheWriteError, Deadline, downloadFile, reason, TIMEOUT_HINT, type FetchOptions, type HubFile } from './hub-files.js';

export interface HubOptions {
  cacheDir?: string;        // default: env PEREGRINE_CACHE, else ~/.cache/peregrine
  endpoint?: string;        // default: env PEREGRINE_HUB_URL, else env HF_ENDPOINT, else https://huggingface.co
  revision?: string;        // branch, tag or commit sha; default 'main' (or the id's "@revision")
  offline?: boolean;        // default: env PEREGRINE_OFFLINE=1 or HF_HUB_OFFLINE=1
  checkUpdates?: boolean;   // ask the hub where the revision points now, even when it is cached (default: a cached model makes no request)
  hubTimeout?: number;      // seconds to wait for the hub's answer, and then for each chunk of a download; default env PEREGRINE_HUB_TIMEOUT, else 10
  progress?: boolean;       // progress bar on stderr; default: process.stderr.isTTY
  token?: string;           // default env HF_TOKEN; sent as Authorization: Bearer
}

const DEFAULT_TIMEOUT = 10;

const MARKER = '.peregrine-complete';
/**
 * What a marker's `version` says its snapshot holds: 2, the files of hub-plan.ts; none, only safetensors weights,
 * tokenizer and configs (no modules.json). A snapshot of an older version is used offline, and completed online.
 */
const SNAPSHOT_VERSION = 2;
const PART = /^[A-Za-z0-9._-]+$/;

/** `name` or `owner/name`, characters [A-Za-z0-9._-], no leading/trailing '.' or '-', no '..'. */
export function isHubId(s: string): boolean {
  const parts = s.split('/');
  return parts.length >= 1 && parts.length <= 2 && parts.every((p) =>
    PART.test(p) && !p.includes('..') && !/^[.-]|[.-]$/.test(p));
}

function looksLikePath(s: string): boolean {
  return /^[./~]/.test(s) || s.split('/').length > 2 || s.includes('\\');
}

function statOrUndefined(path: string) {
  try { return statSync(path); } catch { return undefined; }
}

/**
 * Told where a download puts its files, once config.json (and modules.json) are there, and whether the repo
 * has a file; throws to refuse the model before its weights are fetched.
 */
export type RepoCheck = (snapshot: string, has: (name: string) => boolean) => void;

/**
 * A local directory is returned as is; a hub id ("gpt2", "openai-community/gpt2", "owner/name@revision")
 * is found in the cache, or downloaded into it, and its snapshot directory returned.
 */
export async function resolveModelDir(nameOrPath: string, opts: HubOptions = {}, check?: RepoCheck): Promise<string> {
  const path = nameOrPath === '~' || nameOrPath.startsWith('~/') ? join(homedir(), nameOrPath.slice(1)) : nameOrPath;
  const st = statOrUndefined(path);
  if (st?.isDirectory()) return path;
  const at = nameOrPath.indexOf('@');
  const id = at < 0 ? nameOrPath : nameOrPath.slice(0, at);
  if (st || looksLikePath(id)) {
    const what = st ? 'it is a file, expected the directory holding config.json and the weights' : 'check the path';
    throw new PeregrineError('file-missing', `model directory not found: ${path}; ${what}`);
  }
  if (!isHubId(id)) {
    throw new PeregrineError('bad-argument', `"${nameOrPath}" is neither a model directory nor a hub model id like "gpt2" or "openai-community/gpt2"; check the name`);
  }
  let revision = opts.revision;
  if (at >= 0) {
    const named = nameOrPath.slice(at + 1);
    if (revision !== undefined && revision !== named) {
      throw new PeregrineError('bad-argument', `${nameOrPath} names revision ${named} but --revision ${revision} was given; give the revision once`);
    }
    revision = named;
  }
  // "owner/name" may be a mistyped relative path: errors that find no such model say that first
  const lead = id.includes('/') ? `no such directory ${path}; read as a hub id, ` : '';
  return fromHub(id, { ...opts, revision }, lead, check);
}

interface Sibling { rfilename: string; size?: number; blobId?: string; lfs?: { sha256: string; size: number } }
interface RepoInfo { sha: string; siblings: Sibling[] }

async function fromHub(id: string, opts: HubOptions, lead: string, check?: RepoCheck): Promise<string> {
  const env = process.env;
  const cacheDir = opts.cacheDir ?? env.PEREGRINE_CACHE ?? join(homedir(), '.cache', 'peregrine');
  const endpoint = (opts.endpoint ?? env.PEREGRINE_HUB_URL ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const revision = opts.revision ?? 'main';
  const timeout = opts.hubTimeout ?? hubTimeoutFromEnv();
  if (!(Number.isFinite(timeout) && timeout > 0)) throw new PeregrineError('bad-argument', `hub timeout must be a number of seconds > 0, got ${timeout}`);
  if (!safeName(revision)) {
    throw new PeregrineError('bad-argument', `invalid revision "${revision}"; use a branch, tag or commit sha such as "main"`);
  }
  const offline = opts.offline ?? (env.PEREGRINE_OFFLINE === '1' || env.HF_HUB_OFFLINE === '1');
  const token = opts.token ?? env.HF_TOKEN;
  const fetchOpts: FetchOptions = {
    headers: { 'User-Agent': 'peregrine/0.1', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    progress: opts.progress ?? process.stderr.isTTY === true,
    timeoutSeconds: timeout,
  };

  const cacheSt = statOrUndefined(cacheDir);
  if (cacheSt && !cacheSt.isDirectory()) {
    throw new PeregrineError('cache', `the model cache path ${cacheDir} exists but is not a directory; remove it, or set PEREGRINE_CACHE to a writable directory`);
  }
  const repoDir = join(cacheDir, `models--${id.replace('/', '--')}`);

  if (offline) return fromCache(id, repoDir, revision, lead, 'offline mode is on (offline option, PEREGRINE_OFFLINE or HF_HUB_OFFLINE); run once online to download it, or pass a local model directory');
  if (!opts.checkUpdates) {
    const cached = cachedSnapshot(repoDir, revision, SNAPSHOT_VERSION);
    if (cached) return cached;
  }
  const info = await fetchInfo(id, endpoint, revision, fetchOpts, lead);
  if (typeof info === 'string') {
    return fromCache(id, repoDir, revision, lead, `the hub ${endpoint} is unreachable (${info}); check the network, or run once online to fill the cache`);
  }

  const snapshot = join(repoDir, 'snapshots', info.sha);
  if (!isComplete(snapshot, SNAPSHOT_VERSION)) await downloadSnapshot(id, info, snapshot, endpoint, fetchOpts, check);
  writeAtomically(join(repoDir, 'refs', revision), info.sha);
  return snapshot;
}

function hubTimeoutFromEnv(): number {
  const v = process.env.PEREGRINE_HUB_TIMEOUT;
  if (v === undefined || v === '') return DEFAULT_TIMEOUT;
  const s = Number(v);
  if (!Number.isFinite(s) || s <= 0) throw new PeregrineError('bad-argument', `PEREGRINE_HUB_TIMEOUT=${JSON.stringify(v)} must be a number of seconds > 0; fix or unset it`);
  return s;
}

/** The repo's metadata, or a string saying why the hub could not be reached (network error, no answer in time). */
async function fetchInfo(id: string, endpoint: string, revision: string, fetchOpts: FetchOptions, lead: string): Promise<RepoInfo | string> {
  const url = `${endpoint}/api/models/${id}/revision/${encodeURIComponent(revision)}?blobs=true`;
  const deadline = new Deadline(fetchOpts.timeoutSeconds);
  deadline.arm();
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers: fetchOpts.headers, signal: deadline.signal });
    } catch (err) {
      return deadline.fired ? `no answer within ${deadline.seconds} s; ${TIMEOUT_HINT}` : reason(err);
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) {
      await res.body?.cancel();
      throw new PeregrineError('download', `${lead}model ${id} (revision ${revision}) not found on ${endpoint} (HTTP ${res.status}); check the name, or set HF_TOKEN for a private model`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new PeregrineError('download', `the hub ${endpoint} answered HTTP ${res.status} for model ${id}; try again later, or use the cache with PEREGRINE_OFFLINE=1`);
    }
    const info = await res.json().catch(() => undefined) as RepoInfo | undefined;
    if (info === undefined && deadline.fired) return `no answer within ${deadline.seconds} s; ${TIMEOUT_HINT}`;
    return checkInfo(info, endpoint, url);
  } finally {
    deadline.clear();
  }
}

function checkInfo(info: RepoInfo | undefined, endpoint: string, url: string): RepoInfo {
  if (typeof info?.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha) || !Array.isArray(info.siblings)) {
    throw new PeregrineError('download', `the hub ${endpoint} answered ${url} with unexpected metadata (no commit sha or file list); check PEREGRINE_HUB_URL / HF_ENDPOINT`);
  }
  return info;
}

/** The complete snapshot (of `version` or later) that `refs/{revision}` (or a commit sha given as revision) points to, if any. */
function cachedSnapshot(repoDir: string, revision: string, version = 1): string | undefined {
  let sha = /^[0-9a-f]{40}$/.test(revision) ? revision : undefined;
  try { sha ??= readFileSync(join(repoDir, 'refs', revision), 'utf8').trim(); } catch { /* no ref */ }
  const snapshot = sha && /^[0-9a-f]{40}$/.test(sha) ? join(repoDir, 'snapshots', sha) : undefined;
  return snapshot && isComplete(snapshot, version) ? snapshot : undefined;
}

function fromCache(id: string, repoDir: string, revision: string, lead: string, why: string): string {
  const snapshot = cachedSnapshot(repoDir, revision);
  if (snapshot) return snapshot;
  throw new PeregrineError('cache', `${lead}model ${id} (revision ${revision}) is not in the cache at ${repoDir} and ${why}`);
}

/** Complete = the marker exists, of `version` or later, and every file it lists is there with its size. */
function isComplete(snapshot: string, version: number): boolean {
  try {
    const marker = JSON.parse(readFileSync(join(snapshot, MARKER), 'utf8')) as { version?: number; files: { name: string; size: number }[] };
    return (marker.version ?? 1) >= version && marker.files.every((f) => statSync(join(snapshot, f.name)).size === f.size);
  } catch {
    return false;
  }
}

function safeName(name: string): boolean {
  return name.length > 0 && !name.startsWith('/') && !name.includes('\\') && name.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

async function downloadSnapshot(id: string, info: RepoInfo, snapshot: string, endpoint: string, fetchOpts: FetchOptions, check?: RepoCheck): Promise<void> {
  const files = new Map<string, HubFile>();
  for (const s of info.siblings) {
    if (typeof s?.rfilename !== 'string' || !safeName(s.rfilename)) continue;
    files.set(s.rfilename, { name: s.rfilename, size: s.lfs?.size ?? s.size, sha256: s.lfs?.sha256, blobId: s.lfs ? undefined : s.blobId });
  }
  const has = (name: string) => files.has(name);
  const plan = planFiles(`model ${id} on ${endpoint}`, [...files.keys()]);

  try {
    mkdirSync(snapshot, { recursive: true });
  } catch (err) {
    throw cacheWriteError(err, snapshot);
  }
  const base = `${endpoint}/${id}/resolve/${info.sha}/`;
  const get = async (name: string): Promise<void> => {
    const file = files.get(name)!;
    const dest = join(snapshot, name);
    if (alreadyThere(dest, file)) return;
    try { mkdirSync(dirname(dest), { recursive: true }); } catch (err) { throw cacheWriteError(err, dirname(dest)); }
    await downloadFile(base + name.split('/').map(encodeURIComponent).join('/'), dest, file, fetchOpts);
  };
  // the files that name others first: what they name is checked before anything else is fetched
  for (const name of plan.lists) await get(name);
  const rest = plan.rest(snapshot);
  await get(CONFIG);
  check?.(snapshot, has);
  for (const name of rest) await get(name);

  const wanted = [...plan.lists, CONFIG, ...rest];
  const marker = { version: SNAPSHOT_VERSION, files: wanted.map((name) => ({ name, size: statSync(join(snapshot, name)).size })) };
  writeAtomically(join(snapshot, MARKER), JSON.stringify(marker, null, 1) + '\n');
}

function writeAtomically(path: string, text: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(`${path}.tmp`, text);
    renameSync(`${path}.tmp`, path);
  } catch (err) {
    throw cacheWriteError(err, path);
  }
}
