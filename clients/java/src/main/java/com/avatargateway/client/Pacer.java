package com.avatargateway.client;

import java.time.Duration;

/** Releases audio at real time, as a live source (TTS, a microphone) would. */
public final class Pacer {
  private Pacer() {}

  /** Receives one chunk of audio. */
  @FunctionalInterface
  public interface ChunkSink {
    /** Sends {@code chunk}. */
    void send(byte[] chunk) throws InterruptedException;
  }

  /**
   * Calls {@code sink} with consecutive chunks of {@code audio}: chunk i at start + i*chunk on the
   * monotonic clock, so scheduling jitter does not accumulate.
   */
  public static void pace(Audio audio, Duration chunk, ChunkSink sink) throws InterruptedException {
    long start = System.nanoTime();
    long sentNanos = 0;
    for (byte[] c : audio.chunks(chunk)) {
      long wait = start + sentNanos - System.nanoTime();
      if (wait > 0) {
        Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
      }
      sink.send(c);
      sentNanos += c.length * 1_000_000_000L / audio.bytesPerSecond();
    }
  }
}
