// A zip writer for tests: archives laid out as torch.save writes them (a data descriptor after each entry, data
// aligned to 64 bytes), or plainly, or with every size and offset in ZIP64 fields; entries may claim any method,
// sizes and checksum, so that malformed archives can be written on purpose.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { readZipDirectory } from '../../src/loaders/zip.js';

export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** compression method written (the data is written as given either way); default 0, stored */
  method?: number;
  /** checksum written; default the data's */
  crc?: number;
  /** uncompressed size written; default the data's length */
  size?: number;
}

export interface ZipLayout {
  /** every size and offset as all ones in its 32-bit field, the values in ZIP64 extra fields and end records */
  zip64?: boolean;
  /** sizes after the data in a descriptor, zero in the local header (torch.save's way) */
  descriptor?: boolean;
  /** data aligned to this many bytes through padding in the local extra field (torch.save: 64) */
  align?: number;
  comment?: string;
}

export function writeZip(entries: ZipInput[], o: ZipLayout = {}): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  const push = (b: Buffer) => { parts.push(b); pos += b.length; };
  const central: Buffer[] = [];
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const crc = e.crc ?? crc32(e.data) >>> 0;
    const size = e.size ?? e.data.length;
    const local = pos;
    const z64 = o.zip64 ? (() => { const x = Buffer.alloc(20); x.writeUInt16LE(1, 0); x.writeUInt16LE(16, 2); x.writeBigUInt64LE(BigInt(size), 4); x.writeBigUInt64LE(BigInt(e.data.length), 12); return x; })() : Buffer.alloc(0);
    let extra = z64;
    if (o.align) {
      const start = local + 30 + name.length + extra.length;
      let pad = (o.align - ((start + 4) % o.align)) % o.align;
      const padding = Buffer.alloc(4 + pad);
      padding.writeUInt16LE(0x4246, 0); // "FB", torch's padding field
      padding.writeUInt16LE(pad, 2);
      extra = Buffer.concat([extra, padding]);
    }
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(o.zip64 ? 45 : 20, 4);
    h.writeUInt16LE((o.descriptor ? 8 : 0) | 0x800, 6);
    h.writeUInt16LE(e.method ?? 0, 8);
    if (!o.descriptor) {
      h.writeUInt32LE(crc, 14);
      h.writeUInt32LE(o.zip64 ? 0xffffffff : e.data.length, 18);
      h.writeUInt32LE(o.zip64 ? 0xffffffff : size, 22);
    }
    h.writeUInt16LE(name.length, 26);
    h.writeUInt16LE(extra.length, 28);
    push(Buffer.concat([h, name, extra]));
    push(Buffer.from(e.data));
    if (o.descriptor) {
      const d = Buffer.alloc(o.zip64 ? 24 : 16);
      d.writeUInt32LE(0x08074b50, 0);
      d.writeUInt32LE(crc, 4);
      if (o.zip64) { d.writeBigUInt64LE(BigInt(e.data.length), 8); d.writeBigUInt64LE(BigInt(size), 16); } else { d.writeUInt32LE(e.data.length, 8); d.writeUInt32LE(size, 12); }
      push(d);
    }
    const cextra = o.zip64 ? (() => { const x = Buffer.alloc(28); x.writeUInt16LE(1, 0); x.writeUInt16LE(24, 2); x.writeBigUInt64LE(BigInt(size), 4); x.writeBigUInt64LE(BigInt(e.data.length), 12); x.writeBigUInt64LE(BigInt(local), 20); return x; })() : Buffer.alloc(0);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(o.zip64 ? 45 : 20, 4);
    c.writeUInt16LE(o.zip64 ? 45 : 20, 6);
    c.writeUInt16LE((o.descriptor ? 8 : 0) | 0x800, 8);
    c.writeUInt16LE(e.method ?? 0, 10);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(o.zip64 ? 0xffffffff : e.data.length, 20);
    c.writeUInt32LE(o.zip64 ? 0xffffffff : size, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(cextra.length, 30);
    c.writeUInt32LE(o.zip64 ? 0xffffffff : local, 42);
    central.push(Buffer.concat([c, name, cextra]));
  }
  const cdOffset = pos;
  const cd = Buffer.concat(central);
  push(cd);
  if (o.zip64) {
    const r = Buffer.alloc(56);
    r.writeUInt32LE(0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE(45, 12);
    r.writeUInt16LE(45, 14);
    r.writeBigUInt64LE(BigInt(entries.length), 24);
    r.writeBigUInt64LE(BigInt(entries.length), 32);
    r.writeBigUInt64LE(BigInt(cd.length), 40);
    r.writeBigUInt64LE(BigInt(cdOffset), 48);
    const recordAt = pos;
    push(r);
    const l = Buffer.alloc(20);
    l.writeUInt32LE(0x07064b50, 0);
    l.writeBigUInt64LE(BigInt(recordAt), 8);
    l.writeUInt32LE(1, 16);
    push(l);
  }
  const comment = Buffer.from(o.comment ?? '', 'utf8');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(o.zip64 ? 0xffff : entries.length, 8);
  end.writeUInt16LE(o.zip64 ? 0xffff : entries.length, 10);
  end.writeUInt32LE(o.zip64 ? 0xffffffff : cd.length, 12);
  end.writeUInt32LE(o.zip64 ? 0xffffffff : cdOffset, 16);
  end.writeUInt16LE(comment.length, 20);
  push(Buffer.concat([end, comment]));
  return Buffer.concat(parts);
}

/** The entries of a (trusted, well-formed) archive on disk, in the order of their data. */
export function zipEntries(path: string): ZipInput[] {
  const fd = openSync(path, 'r');
  try {
    const dir = readZipDirectory(fd, fstatSync(fd).size, (what) => { throw new Error(what); });
    return [...dir.values()].sort((a, b) => a.begin - b.begin).map((e) => {
      const data = Buffer.alloc(e.end - e.begin);
      readSync(fd, data, 0, data.length, e.begin);
      return { name: e.name, data };
    });
  } finally {
    closeSync(fd);
  }
}
