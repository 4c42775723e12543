package com.avatargateway.client;

import com.avatargateway.gateway.v1.AudioEncoding;
import com.avatargateway.gateway.v1.AudioFormat;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * 16-bit little-endian PCM (LINEAR16), channels interleaved.
 *
 * @param pcm the samples
 * @param sampleRateHertz samples per second
 * @param channels interleaved channels
 */
public record Audio(byte[] pcm, int sampleRateHertz, int channels) {

  /** The AudioFormat of LINEAR16 audio, for {@code DriveConfig.audio_format}. */
  public static AudioFormat linear16(int sampleRateHertz, int channels) {
    return AudioFormat.newBuilder()
        .setAudioEncoding(AudioEncoding.AUDIO_ENCODING_LINEAR16)
        .setSampleRateHertz(sampleRateHertz)
        .setAudioChannelCount(channels)
        .build();
  }

  /** The AudioFormat of this audio. */
  public AudioFormat format() {
    return linear16(sampleRateHertz, channels);
  }

  /** Bytes of one second of this audio. */
  public int bytesPerSecond() {
    return sampleRateHertz * channels * 2;
  }

  /** Duration of this audio. */
  public Duration duration() {
    return Duration.ofNanos(pcm.length * 1_000_000_000L / bytesPerSecond());
  }

  /** Splits the audio into chunks of {@code chunk} (whole frames; the last may be shorter). */
  public List<byte[]> chunks(Duration chunk) {
    int frame = channels * 2;
    int size = (int) Math.max(frame, sampleRateHertz * chunk.toNanos() / 1_000_000_000L * frame);
    List<byte[]> out = new ArrayList<>();
    for (int off = 0; off < pcm.length; off += size) {
      out.add(Arrays.copyOfRange(pcm, off, Math.min(pcm.length, off + size)));
    }
    return out;
  }
}
