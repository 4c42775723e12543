import { once } from "node:events";
import { type CallOptions, type ClientDuplexStream, Metadata, type StatusObject } from "@grpc/grpc-js";
import type {
  AvatarGatewayClient,
  DriveConfig,
  DriveRequest,
  DriveResponse,
  DriveStarted,
} from "./gen/avatar/gateway/v1/avatar_gateway_service";
import type { AudioFormat } from "./gen/avatar/gateway/v1/media";
import { paced } from "./pacing";
import type { Audio } from "./wav";

/** Largest audio request the API accepts (DriveRequest.audio). */
export const DEFAULT_MAX_AUDIO_CHUNK_BYTES = 65536;

export interface DriveOptions {
  /** End a Drive stream already open on the session instead of failing (reconnects). */
  preempt?: boolean;
  /** Call deadline (a Date or epoch milliseconds). */
  deadline?: Date | number;
  /** Request metadata. */
  metadata?: Metadata;
}

/**
 * A Drive call. Iterate it (`for await (const ev of stream)`) for the events that follow
 * `started`; the loop ends when the call ends with OK and throws the ServiceError
 * otherwise (see `errorInfo`). `status` resolves with the final status either way.
 */
export class DriveStream implements AsyncIterable<DriveResponse> {
  /** The server's answer to the config (set by `drive()`). */
  started: DriveStarted | undefined;
  /** The call's final status (OK or not), with its trailers. */
  readonly status: Promise<StatusObject>;
  private readonly events: AsyncIterator<DriveResponse>;
  private ended = false;

  constructor(readonly call: ClientDuplexStream<DriveRequest, DriveResponse>) {
    this.status = new Promise((resolve) =>
      call.on("status", (s: StatusObject) => {
        this.ended = true;
        resolve(s);
      }),
    );
    call.on("error", () => {}); // surfaced through the iterator and `status`
    this.events = call[Symbol.asyncIterator]();
  }

  /** Opens a Drive call without sending anything (see `drive()` for the usual way). */
  static open(client: AvatarGatewayClient, options: DriveOptions = {}): DriveStream {
    const callOptions: Partial<CallOptions> = options.deadline ? { deadline: options.deadline } : {};
    return new DriveStream(client.drive(options.metadata ?? new Metadata(), callOptions));
  }

  [Symbol.asyncIterator](): AsyncIterator<DriveResponse> {
    return this.events;
  }

  /** The next event, or undefined once the call has ended with OK (throws otherwise). */
  async next(): Promise<DriveResponse | undefined> {
    const r = await this.events.next();
    return r.done ? undefined : r.value;
  }

  /** Sends one request, waiting while gRPC flow control holds the stream. */
  async send(request: DriveRequest): Promise<void> {
    if (this.ended) throw new Error("the Drive call has ended");
    if (!this.call.write(request)) {
      await Promise.race([once(this.call, "drain"), this.status]);
    }
  }

  /** Sends PCM in the configured format, split into requests the server accepts. */
  async sendAudio(pcm: Uint8Array): Promise<void> {
    const max = this.started?.maxAudioChunkBytes || DEFAULT_MAX_AUDIO_CHUNK_BYTES;
    for (let off = 0; off < pcm.length; off += max) {
      await this.send({ audio: Buffer.from(pcm.subarray(off, off + max)) });
    }
  }

  /** Sends `audio` at real time in chunks of `chunkMs`, as a live source would. */
  async sendPaced(audio: Audio, chunkMs = 20, signal?: AbortSignal): Promise<void> {
    for await (const chunk of paced(audio, chunkMs, signal)) await this.sendAudio(chunk);
  }

  /** Text for the vendor's TTS; `final` ends the turn. */
  sendText(text: string, final = true): Promise<void> {
    return this.send({ text: { text, final } });
  }

  /** The current turn is complete: the server flushes it and tells the vendor. */
  endTurn(): Promise<void> {
    return this.send({ endTurn: {} });
  }

  /** Barge-in: drop queued audio and stop the avatar; answered by an `interrupted` event. */
  interrupt(): Promise<void> {
    return this.send({ interrupt: {} });
  }

  /** Half-closes: the server finishes the current turn, then ends the call with OK. */
  halfClose(): void {
    this.call.end();
  }

  /** Abandons the call (status CANCELLED). */
  cancel(): void {
    this.call.cancel();
  }
}

/**
 * Opens a Drive stream on `session` ("sessions/{id}"), sends the config first, as the
 * protocol requires, and waits for the server's `started` answer. `format` may be omitted
 * for a text-only stream. A rejected config rejects with the call's ServiceError.
 */
export async function drive(
  client: AvatarGatewayClient,
  session: string,
  format?: AudioFormat,
  options: DriveOptions = {},
): Promise<DriveStream> {
  const stream = DriveStream.open(client, options);
  const config: DriveConfig = { session, audioFormat: format, preempt: options.preempt ?? false };
  await stream.send({ config });
  const first = await stream.next();
  if (!first?.started) {
    stream.cancel();
    throw new Error(`first Drive response is not started: ${JSON.stringify(first)}`);
  }
  stream.started = first.started;
  return stream;
}
