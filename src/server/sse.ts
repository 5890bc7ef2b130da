// Server-sent events as OpenAI streams them: one `data: <json>` per chunk, `data: [DONE]` at the end. The
// stream starts only once the request was admitted (refusals are plain JSON errors with their status), so an
// error here happened while generating: it goes out as the last event, an OpenAI error object, which the
// official client raises.
import { PassThrough } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { toApiError } from './errors.js';

export class EventStream {
  private readonly body = new PassThrough();

  /** Starts the response: status 200, the event-stream headers. */
  constructor(reply: FastifyReply) {
    void reply.status(200).headers({ 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' }).send(this.body);
  }

  send(chunk: unknown): void {
    this.sendJson(JSON.stringify(chunk));
  }

  /** A chunk already serialized (a stream's chunks share their head: serialized once, see generate.ts). */
  sendJson(json: string): void {
    if (!this.body.writableEnded) this.body.write(`data: ${json}\n\n`);
  }

  end(): void {
    if (!this.body.writableEnded) this.body.end('data: [DONE]\n\n');
  }

  /** An error after the stream started: the last event. Returns its status code, for the metrics. */
  fail(err: unknown): number {
    const e = toApiError(err);
    if (!this.body.writableEnded) this.body.end(`data: ${JSON.stringify(e.body())}\n\n`);
    return e.status;
  }
}
