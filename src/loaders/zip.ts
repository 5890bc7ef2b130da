// ZIP reader for torch.save archives: the end-of-central-directory record (and its ZIP64 form, which torch writes
// when an archive passes 4 GiB or 65535 entries), the central directory, and each entry's local header for where
// its bytes start. Only the directory is read at open; every count, offset and size is checked against the file
// before it is used. Entries must be stored (uncompressed), as torch.save writes them: their bytes are the data.
import { readSync } from 'node:fs';
import { show } from '../errors.js';

export interface ZipEntry {
  name: string;
  /** compression method: 0 stored, 8 deflate, ... */
  method: number;
  crc: number;
  /** absolute byte range of the entry's data in the file */
  begin: number;
  end: number;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const MAX_COMMENT = 0xffff;
/** central directories of torch archives are ~100 bytes an entry; this is millions of entries */
const MAX_DIRECTORY = 256 * 1024 * 1024;
const METHODS: Record<number, string> = { 0: 'stored', 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz' };

/** Reads exactly `length` bytes at `position`; fewer is a truncated file. */
export function readAt(fd: number, position: number, length: number, bad: (what: string) => never, what: string): Buffer {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, position + done);
    if (n === 0) bad(`${what} runs past the end of the file (truncated?)`);
    done += n;
  }
  return out;
}

/** A 64-bit field as a number; beyond 2^53 no file on a disk is that large. */
function u64(b: Buffer, at: number, what: string, bad: (what: string) => never): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`${what} is ${v}, beyond any file's size`);
  return Number(v);
}

interface Directory {
  entries: number;
  offset: number;
  size: number;
  /** where the records after the central directory start: nothing of an entry lies at or beyond it */
  limit: number;
}

function findDirectory(fd: number, fileSize: number, bad: (what: string) => never): Directory {
  if (fileSize < 22) bad(`it is ${fileSize} bytes long, too short for a zip archive`);
  const tailLen = Math.min(fileSize, 22 + MAX_COMMENT);
  const tailStart = fileSize - tailLen;
  const tail = readAt(fd, tailStart, tailLen, bad, 'the end of the archive');
  // the record's comment runs to the end of the file, which finds the real record behind a comment that holds its signature
  let at = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD && i + 22 + tail.readUInt16LE(i + 20) === tailLen) { at = i; break; }
  }
  if (at < 0) bad('it has no end-of-central-directory record (not a zip archive, or truncated)');
  const eocd = tailStart + at;
  const disk = tail.readUInt16LE(at + 4), cdDisk = tail.readUInt16LE(at + 6);
  let entries = tail.readUInt16LE(at + 10), size = tail.readUInt32LE(at + 12), offset = tail.readUInt32LE(at + 16);
  let limit = eocd;
  const locatorAt = at - 20;
  if (locatorAt >= 0 && tail.readUInt32LE(locatorAt) === ZIP64_LOCATOR) {
    const recordAt = u64(tail, locatorAt + 8, 'the ZIP64 record offset', bad);
    if (recordAt + 56 > eocd - 20) bad(`the ZIP64 end record at byte ${recordAt} runs past its locator`);
    const rec = readAt(fd, recordAt, 56, bad, 'the ZIP64 end record');
    if (rec.readUInt32LE(0) !== ZIP64_EOCD) bad(`there is no ZIP64 end record at byte ${recordAt}, where its locator points`);
    if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0) bad('it spans several disks (a split archive)');
    entries = u64(rec, 32, 'the ZIP64 entry count', bad);
    size = u64(rec, 40, 'the ZIP64 central directory size', bad);
    offset = u64(rec, 48, 'the ZIP64 central directory offset', bad);
    limit = recordAt;
  } else {
    if (disk !== 0 || cdDisk !== 0) bad('it spans several disks (a split archive)');
    if (entries === 0xffff || size === 0xffffffff || offset === 0xffffffff) bad('its end record says ZIP64 but there is no ZIP64 locator before it');
  }
  if (size > MAX_DIRECTORY) bad(`its central directory is ${size} bytes (limit ${MAX_DIRECTORY})`);
  if (offset + size > limit) bad(`its central directory (bytes ${offset} to ${offset + size}) runs past the end records at byte ${limit}`);
  if (entries * 46 > size) bad(`its central directory of ${size} bytes cannot hold the ${entries} entries its end record counts`);
  return { entries, offset, size, limit: offset };
}

/** The entries of the zip archive open as `fd`, by name; `bad` throws the caller's error for a malformed file. */
export function readZipDirectory(fd: number, fileSize: number, bad: (what: string) => never): Map<string, ZipEntry> {
  const dir = findDirectory(fd, fileSize, bad);
  const cd = readAt(fd, dir.offset, dir.size, bad, 'the central directory');
  const entries = new Map<string, ZipEntry>();
  const spans: { name: string; from: number; to: number }[] = [];
  let p = 0;
  for (let i = 0; i < dir.entries; i++) {
    if (p + 46 > cd.length) bad(`central directory entry ${i} runs past the directory`);
    if (cd.readUInt32LE(p) !== CENTRAL) bad(`central directory entry ${i} has no entry signature`);
    const flags = cd.readUInt16LE(p + 8), method = cd.readUInt16LE(p + 10), crc = cd.readUInt32LE(p + 16);
    let csize = cd.readUInt32LE(p + 20), usize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28), extraLen = cd.readUInt16LE(p + 30), commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length) bad(`central directory entry ${i} runs past the directory`);
    const nameBytes = cd.subarray(p + 46, p + 46 + nameLen);
    const name = nameBytes.toString('utf8');
    // ZIP64 sizes and offset, each present only where its 32-bit field is all ones
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen;) {
      const id = cd.readUInt16LE(e), len = cd.readUInt16LE(e + 2);
      if (e + 4 + len > p + 46 + nameLen + extraLen) bad(`entry ${show(name)} has an extra field that runs past its record`);
      if (id === 1) {
        let q = e + 4;
        const next = (what: string): number => {
          if (q + 8 > e + 4 + len) bad(`entry ${show(name)}: its ZIP64 field is too short for the ${what}`);
          const v = u64(cd, q, `entry ${show(name)}'s ZIP64 ${what}`, bad);
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next('size');
        if (csize === 0xffffffff) csize = next('compressed size');
        if (local === 0xffffffff) local = next('offset');
      }
      e += 4 + len;
    }
    p = end;
    if (entries.has(name)) bad(`it has two entries named ${show(name)}`);
    if (flags & 1) bad(`entry ${show(name)} is encrypted`);
    if (method !== 0) {
      bad(`entry ${show(name)} is compressed (${METHODS[method] ?? `method ${method}`}); torch.save writes stored entries, so the archive was repacked: load and save it again with torch.save, or convert it to safetensors`);
    }
    if (csize !== usize) bad(`entry ${show(name)} is stored but its sizes differ (${csize} and ${usize})`);
    if (local + 30 > dir.limit) bad(`entry ${show(name)}'s local header at byte ${local} lies past the entries`);
    const lh = readAt(fd, local, 30, bad, `entry ${show(name)}'s local header`);
    if (lh.readUInt32LE(0) !== LOCAL) bad(`entry ${show(name)} has no local header at byte ${local}`);
    const lname = lh.readUInt16LE(26), lextra = lh.readUInt16LE(28);
    const begin = local + 30 + lname + lextra;
    if (begin + csize > dir.limit) bad(`entry ${show(name)} (bytes ${begin} to ${begin + csize}) runs past the entries, into the central directory at byte ${dir.limit}`);
    if (!readAt(fd, local + 30, lname, bad, `entry ${show(name)}'s local name`).equals(nameBytes)) bad(`entry ${show(name)}'s local header names another file`);
    entries.set(name, { name, method, crc, begin, end: begin + csize });
    spans.push({ name, from: local, to: begin + csize });
  }
  spans.sort((a, b) => a.from - b.from);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].from < spans[i - 1].to) bad(`entries ${show(spans[i - 1].name)} and ${show(spans[i].name)} overlap`);
  }
  return entries;
}
