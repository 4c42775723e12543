package com.avatargateway.client;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/** Reads 16-bit PCM WAV files. */
public final class Wav {
  private Wav() {}

  /** Reads a 16-bit PCM WAV file. */
  public static Audio read(Path path) throws IOException {
    try {
      return parse(Files.readAllBytes(path));
    } catch (IllegalArgumentException e) {
      throw new IOException(path + ": " + e.getMessage(), e);
    }
  }

  /**
   * Parses a RIFF/WAVE file of 16-bit integer PCM (WAVE_FORMAT_PCM, or WAVE_FORMAT_EXTENSIBLE with
   * the PCM sub-format).
   *
   * @throws IllegalArgumentException when the data is not such a file
   */
  public static Audio parse(byte[] data) {
    ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
    if (data.length < 12 || !tag(data, 0).equals("RIFF") || !tag(data, 8).equals("WAVE")) {
      throw new IllegalArgumentException("not a 16-bit PCM WAV: no RIFF/WAVE header");
    }
    int rate = 0;
    int channels = 0;
    int off = 12;
    while (off + 8 <= data.length) {
      String id = tag(data, off);
      long size = Integer.toUnsignedLong(b.getInt(off + 4));
      int start = off + 8;
      int end = (int) Math.min(data.length, start + size);
      if (id.equals("fmt ")) {
        if (end - start < 16) {
          throw new IllegalArgumentException("not a 16-bit PCM WAV: short fmt chunk");
        }
        int format = Short.toUnsignedInt(b.getShort(start));
        channels = Short.toUnsignedInt(b.getShort(start + 2));
        rate = b.getInt(start + 4);
        int bits = Short.toUnsignedInt(b.getShort(start + 14));
        if (format == 0xFFFE && end - start >= 26) { // EXTENSIBLE: the sub-format GUID
          format = Short.toUnsignedInt(b.getShort(start + 24));
        }
        if (format != 1 || bits != 16 || channels < 1) {
          throw new IllegalArgumentException(
              "not a 16-bit PCM WAV: format tag " + format + ", " + bits + " bits, " + channels + " channels");
        }
      } else if (id.equals("data")) {
        if (rate == 0) {
          throw new IllegalArgumentException("not a 16-bit PCM WAV: data before fmt");
        }
        int frame = channels * 2;
        int len = (end - start) / frame * frame;
        return new Audio(Arrays.copyOfRange(data, start, start + len), rate, channels);
      }
      off = (int) (start + size + (size % 2)); // chunks are word-aligned
    }
    throw new IllegalArgumentException("not a 16-bit PCM WAV: no data chunk");
  }

  private static String tag(byte[] data, int off) {
    return new String(data, off, 4, StandardCharsets.ISO_8859_1);
  }
}
