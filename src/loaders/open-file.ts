// Opening a checkpoint file for a reader: a regular file (a directory fails only when read, and opening a FIFO
// blocks until someone writes to it), its descriptor closed again when the reader refuses the file.
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { fail, fsError } from '../errors.js';

/** `parse(fd, size)` over `path` opened for reading; `what` names the file in messages ("GGUF file"). */
export function openAndParse<T>(path: string, what: string, parse: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) fail('file-unreadable', `${what} is ${st.isDirectory() ? 'a directory' : 'not a regular file'}, expected a file: ${path}`);
    fd = openSync(path, 'r');
  } catch (err) {
    throw fsError(err, what, path);
  }
  try {
    return parse(fd, fstatSync(fd).size);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
