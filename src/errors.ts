// Errors a user can act on. The message is one line: what is wrong, where, and what to do.
// The CLI prints it without a stack; anything that is not a PeregrineError is a bug in Peregrine.

export type ErrorCode =
  | 'file-missing'
  | 'file-unreadable'
  | 'bad-safetensors'
  | 'bad-gguf'
  | 'bad-pytorch'
  | 'bad-config'
  | 'unsupported-config'
  | 'unknown-architecture'
  | 'weights-mismatch'
  | 'bad-argument'
  | 'bad-request'
  | 'cache'
  | 'download'
  | 'device'
  | 'out-of-memory'
  | 'non-finite';

export class PeregrineError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    // every kind of line break: names from files (a tensor called "a\rb") end up in messages
    super(message.replace(/\s*[\r\n\u2028\u2029]\s*/g, ' '));
    this.name = 'PeregrineError';
    this.code = code;
  }
}

export function fail(code: ErrorCode, message: string): never {
  throw new PeregrineError(code, message);
}

/** A value read from a file, for a message: its JSON, cut short (a hostile file holds huge or deeply nested values, and JSON.stringify overflows the stack on the latter). */
export function show(value: unknown, max = 80): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = '(a value nested too deeply to show)';
  }
  return s.length > max ? `${s.slice(0, max)}... (${s.length} characters)` : s;
}

/** Turns a Node.js filesystem error into a one-line PeregrineError; other errors pass through. */
export function fsError(err: unknown, what: string, path: string): Error {
  if (err instanceof PeregrineError) return err;
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT':
      return new PeregrineError('file-missing', `${what} not found: ${path}`);
    case 'EACCES':
    case 'EPERM':
      return new PeregrineError('file-unreadable', `${what} is not readable (permission denied): ${path}; check its permissions`);
    case 'EISDIR':
      return new PeregrineError('file-unreadable', `${what} is a directory, expected a file: ${path}`);
    case 'ENOTDIR':
      return new PeregrineError('file-missing', `${what} not found (a parent is not a directory): ${path}`);
    default:
      // any other error of the operating system (ENAMETOOLONG, ELOOP, EIO, EMFILE, ...) is about this path, not a bug
      if (typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code)) return new PeregrineError('file-unreadable', `${what} could not be read (${e.code}): ${path}`);
      return err instanceof Error ? err : new Error(String(err));
  }
}
