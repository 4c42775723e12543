import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { type Audio, bytesPerSecond, chunks } from "./wav";

/**
 * Yields consecutive chunks of `audio` at real time: chunk i is released at start + i*chunkMs
 * on the monotonic clock, so timer jitter does not accumulate. Stops (throws AbortError)
 * when `signal` aborts.
 */
export async function* paced(audio: Audio, chunkMs = 20, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const start = performance.now();
  let sentMs = 0;
  for (const chunk of chunks(audio, chunkMs)) {
    const wait = start + sentMs - performance.now();
    if (wait > 0) await sleep(wait, undefined, { signal });
    signal?.throwIfAborted();
    yield chunk;
    sentMs += (chunk.length * 1000) / bytesPerSecond(audio);
  }
}
