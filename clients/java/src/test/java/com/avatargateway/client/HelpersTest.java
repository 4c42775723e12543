package com.avatargateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import io.grpc.protobuf.StatusProto;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class HelpersTest {
  private static byte[] wav(int rate, int channels, int bits, byte[] pcm) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteBuffer fmt = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
    fmt.putShort((short) 1).putShort((short) channels).putInt(rate).putInt(rate * channels * bits / 8)
        .putShort((short) (channels * bits / 8)).putShort((short) bits);
    out.writeBytes("RIFF".getBytes(StandardCharsets.ISO_8859_1));
    out.writeBytes(le(4 + 24 + 12 + 8 + pcm.length));
    out.writeBytes("WAVEfmt ".getBytes(StandardCharsets.ISO_8859_1));
    out.writeBytes(le(16));
    out.writeBytes(fmt.array());
    out.writeBytes("LIST".getBytes(StandardCharsets.ISO_8859_1));
    out.writeBytes(le(3));
    out.writeBytes(new byte[] {1, 2, 3, 0}); // odd-sized chunk plus its pad byte
    out.writeBytes("data".getBytes(StandardCharsets.ISO_8859_1));
    out.writeBytes(le(pcm.length));
    out.writeBytes(pcm);
    return out.toByteArray();
  }

  private static byte[] le(int v) {
    return ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(v).array();
  }

  @Test
  void parsesPcm16AndRejectsTheRest() {
    Audio a = Wav.parse(wav(16000, 1, 16, new byte[3200]));
    assertEquals(16000, a.sampleRateHertz());
    assertEquals(1, a.channels());
    assertEquals(3200, a.pcm().length);
    assertEquals(Duration.ofMillis(100), a.duration());
    assertThrows(IllegalArgumentException.class, () -> Wav.parse(wav(16000, 1, 8, new byte[100])));
    assertThrows(IllegalArgumentException.class, () -> Wav.parse("nope".getBytes(StandardCharsets.UTF_8)));
  }

  @Test
  void pacesAtRealTime() throws InterruptedException {
    Audio a = new Audio(new byte[9602], 16000, 1); // 300 ms + 1 sample
    List<Integer> sizes = new ArrayList<>();
    long start = System.nanoTime();
    Pacer.pace(a, Duration.ofMillis(100), c -> sizes.add(c.length));
    long elapsedMs = (System.nanoTime() - start) / 1_000_000;
    assertEquals(List.of(3200, 3200, 3200, 2), sizes);
    assertTrue(elapsedMs >= 290 && elapsedMs < 2000, "paced 300 ms in " + elapsedMs + " ms");
  }

  @Test
  void decodesErrorInfoFromStatusDetails() {
    ErrorInfo info = ErrorInfo.newBuilder().setReason("SESSION_NOT_FOUND").setDomain(ErrorInfos.DOMAIN)
        .putMetadata("session", "sessions/x").build();
    com.google.rpc.Status status = com.google.rpc.Status.newBuilder().setCode(Code.NOT_FOUND_VALUE)
        .setMessage("no such session").addDetails(Any.pack(info)).build();
    assertEquals(info, ErrorInfos.fromThrowable(StatusProto.toStatusRuntimeException(status)).orElseThrow());
    assertTrue(ErrorInfos.fromThrowable(io.grpc.Status.INTERNAL.asRuntimeException()).isEmpty());
    assertTrue(ErrorInfos.fromThrowable(new RuntimeException("plain")).isEmpty());
  }
}
