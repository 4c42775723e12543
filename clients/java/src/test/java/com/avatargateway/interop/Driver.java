package com.avatargateway.interop;

import com.avatargateway.client.Audio;
import com.avatargateway.client.DriveStream;
import com.avatargateway.client.ErrorInfos;
import com.avatargateway.client.GatewayChannelBuilder;
import com.avatargateway.client.Pacer;
import com.avatargateway.client.Wav;
import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.CloseSessionRequest;
import com.avatargateway.gateway.v1.CreateSessionRequest;
import com.avatargateway.gateway.v1.DriveResponse;
import com.avatargateway.gateway.v1.GetSessionRequest;
import com.avatargateway.gateway.v1.Session;
import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.rpc.ErrorInfo;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Java driver of the cross-language interop suite (tests/interop): reads one scenario as JSON on
 * stdin, runs its steps against the gateway with the generated stubs and the helpers, and prints
 * what it observes as JSON lines on stdout. The Python runner compares them with the scenario's
 * expectations; this program asserts nothing itself.
 *
 * <p>The channel comes from {@link GatewayChannelBuilder}: TLS when the payload has {@code "tls":
 * {"ca_file", "server_name"?, "cert_file"?, "key_file"?}}, plaintext otherwise; {@code
 * "credential"} goes on every call as {@code authorization: Bearer <credential>}.
 */
public final class Driver {
  private static final Gson GSON = new Gson();

  private final JsonObject scenario;
  private final AvatarGatewayGrpc.AvatarGatewayStub stub;
  private final AvatarGatewayGrpc.AvatarGatewayBlockingStub blocking;
  private final List<Map<String, Object>> events = new ArrayList<>();
  private boolean ended;
  private String session = "";
  private DriveStream drive;

  private Driver(JsonObject scenario, ManagedChannel channel) {
    this.scenario = scenario;
    this.stub = AvatarGatewayGrpc.newStub(channel);
    this.blocking = AvatarGatewayGrpc.newBlockingStub(channel);
  }

  private static synchronized void emit(Map<String, Object> line) {
    System.out.println(GSON.toJson(line));
    System.out.flush();
  }

  private static Map<String, Object> line(Object... kv) {
    Map<String, Object> m = new LinkedHashMap<>();
    for (int i = 0; i + 1 < kv.length; i += 2) {
      m.put((String) kv[i], kv[i + 1]);
    }
    return m;
  }

  private static Map<String, Object> statusLine(String op, Throwable err) {
    Map<String, Object> m = line("type", "status", "op", op, "code", 0, "message", "");
    if (err != null) {
      Status s = Status.fromThrowable(err);
      m.put("code", s.getCode().value());
      m.put("message", s.getDescription() == null ? "" : s.getDescription());
      ErrorInfos.fromThrowable(err)
          .ifPresent(
              (ErrorInfo i) ->
                  m.put("error_info", line("reason", i.getReason(), "domain", i.getDomain(), "metadata", i.getMetadataMap())));
    }
    return m;
  }

  private static Map<String, Object> eventLine(DriveResponse ev) {
    return switch (ev.getResponseCase()) {
      case STARTED -> line("type", "event", "event", "started");
      case SPEECH_STARTED -> line("type", "event", "event", "speech_started", "turn_id", ev.getSpeechStarted().getTurnId());
      case SPEECH_ENDED -> line("type", "event", "event", "speech_ended", "turn_id", ev.getSpeechEnded().getTurnId(),
          "interrupted", ev.getSpeechEnded().getInterrupted());
      case TRANSCRIPT -> line("type", "event", "event", "transcript", "turn_id", ev.getTranscript().getTurnId());
      case INTERRUPTED -> line("type", "event", "event", "interrupted", "turn_id", ev.getInterrupted().getTurnId());
      case WARNING -> line("type", "event", "event", "warning", "turn_id", ev.getWarning().getTurnId(),
          "reason", ev.getWarning().getReason());
      case TURN_FAILED -> line("type", "event", "event", "turn_failed", "turn_id", ev.getTurnFailed().getTurnId(),
          "reason", ev.getTurnFailed().getReason());
      case GO_AWAY -> line("type", "event", "event", "go_away");
      default -> line("type", "event", "event", "unknown");
    };
  }

  private synchronized void record(Map<String, Object> l) {
    emit(l);
    events.add(l);
    notifyAll();
  }

  private synchronized void finish(Throwable err) {
    emit(statusLine("drive", err));
    ended = true;
    notifyAll();
  }

  private synchronized boolean hasEvent(String event, String turnId) {
    return events.stream()
        .anyMatch(e -> event.equals(e.get("event")) && (turnId.isEmpty() || turnId.equals(e.get("turn_id"))));
  }

  private synchronized boolean waitFor(long timeoutMs, java.util.function.BooleanSupplier pred)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
    while (!pred.getAsBoolean()) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        return false;
      }
      TimeUnit.NANOSECONDS.timedWait(this, left);
    }
    return true;
  }

  private void startReader(DriveStream d) {
    Thread t =
        new Thread(
            () -> {
              try {
                for (DriveResponse ev = d.next(); ev != null; ev = d.next()) {
                  record(eventLine(ev));
                }
                finish(null);
              } catch (StatusRuntimeException e) {
                finish(e);
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            },
            "drive-reader");
    t.setDaemon(true);
    t.start();
  }

  private static String str(JsonObject s, String key, String def) {
    JsonElement e = s.get(key);
    return e == null || e.isJsonNull() ? def : e.getAsString();
  }

  private static long num(JsonObject s, String key, long def) {
    JsonElement e = s.get(key);
    return e == null || e.isJsonNull() ? def : e.getAsLong();
  }

  private static boolean bool(JsonObject s, String key, boolean def) {
    JsonElement e = s.get(key);
    return e == null || e.isJsonNull() ? def : e.getAsBoolean();
  }

  private interface Action {
    void run() throws Exception;
  }

  private void sent(String op, Action a) {
    Map<String, Object> l = line("type", "sent", "op", op);
    try {
      a.run();
    } catch (Exception e) {
      l.put("error", e.toString());
    }
    emit(l);
  }

  private void run(JsonObject s) throws Exception {
    String op = str(s, "op", "");
    switch (op) {
      case "create_session" -> {
        try {
          Session sess =
              blocking.withDeadlineAfter(30, TimeUnit.SECONDS)
                  .createSession(
                      CreateSessionRequest.newBuilder()
                          .setVendor(str(s, "vendor", str(scenario, "vendor", "zegocloud")))
                          .setAvatarId(str(s, "avatar_id", str(scenario, "avatar_id", "zego_emma")))
                          .build());
          session = sess.getName();
          emit(line("type", "session", "name", sess.getName(), "state", sess.getState().name()));
          emit(statusLine(op, null));
        } catch (StatusRuntimeException e) {
          emit(statusLine(op, e));
        }
      }
      case "get_session", "close_session" -> {
        String name = str(s, "name", session);
        try {
          var b = blocking.withDeadlineAfter(30, TimeUnit.SECONDS);
          if (op.equals("get_session")) {
            b.getSession(GetSessionRequest.newBuilder().setName(name).build());
          } else {
            b.closeSession(CloseSessionRequest.newBuilder().setName(name).build());
          }
          emit(statusLine(op, null));
        } catch (StatusRuntimeException e) {
          emit(statusLine(op, e));
        }
      }
      case "drive" -> {
        long deadlineMs = num(s, "deadline_ms", 0);
        var st = deadlineMs > 0 ? stub.withDeadlineAfter(deadlineMs, TimeUnit.MILLISECONDS) : stub;
        if (!bool(s, "config", true)) {
          drive = DriveStream.openRaw(st);
        } else {
          try {
            drive = DriveStream.open(st, str(s, "session", session), Audio.linear16(16000, 1));
          } catch (StatusRuntimeException e) {
            finish(e);
            return;
          }
          record(line("type", "event", "event", "started"));
        }
        startReader(drive);
      }
      case "send_audio" -> {
        Map<String, Object> l = line("type", "sent", "op", op);
        long[] bytes = {0};
        try {
          Audio audio = Wav.read(Path.of(str(s, "wav", "")));
          Duration chunk = Duration.ofMillis(num(s, "chunk_ms", 20));
          Pacer.ChunkSink sink =
              c -> {
                drive.sendAudio(c);
                bytes[0] += c.length;
              };
          if (bool(s, "pace", true)) {
            Pacer.pace(audio, chunk, sink);
          } else {
            for (byte[] c : audio.chunks(chunk)) {
              sink.send(c);
            }
          }
        } catch (Exception e) {
          l.put("error", e.toString());
        }
        l.put("bytes", bytes[0]);
        emit(l);
      }
      case "send_text" -> sent(op, () -> drive.sendText(str(s, "text", ""), bool(s, "final", true)));
      case "end_turn" -> sent(op, () -> drive.endTurn());
      case "interrupt" -> sent(op, () -> drive.interrupt());
      case "half_close" -> sent(op, () -> drive.halfClose());
      case "cancel" -> sent(op, () -> drive.cancel("cancelled by the interop scenario"));
      case "wait_event" -> {
        String event = str(s, "event", "");
        String turnId = str(s, "turn_id", "");
        waitFor(num(s, "timeout_ms", 15000), () -> ended || hasEvent(event, turnId));
        emit(line("type", "wait", "event", event, "turn_id", turnId, "ok", hasEvent(event, turnId)));
      }
      case "wait_status" -> {
        boolean ok = waitFor(num(s, "timeout_ms", 15000), () -> ended);
        emit(line("type", "wait", "event", "status", "ok", ok));
      }
      case "sleep" -> Thread.sleep(num(s, "ms", 0));
      case "mark" -> emit(line("type", "mark", "name", str(s, "name", "")));
      default -> emit(line("type", "error", "op", op, "message", "unknown op"));
    }
  }

  /** The channel the payload asks for: its {@code target}, {@code tls} and {@code credential}. */
  static ManagedChannel channel(JsonObject sc) throws IOException {
    GatewayChannelBuilder b = GatewayChannelBuilder.forTarget(sc.get("target").getAsString());
    JsonElement tls = sc.get("tls");
    if (tls == null || tls.isJsonNull()) {
      // The runner's local gateway without TLS: a credential may go in clear text over loopback.
      b.usePlaintext().allowCredentialOverPlaintext();
    } else {
      JsonObject t = tls.getAsJsonObject();
      String ca = str(t, "ca_file", "");
      if (!ca.isEmpty()) {
        b.trustedCaFile(Path.of(ca));
      }
      String serverName = str(t, "server_name", "");
      if (!serverName.isEmpty()) {
        b.overrideAuthority(serverName);
      }
      String cert = str(t, "cert_file", "");
      String key = str(t, "key_file", "");
      if (!cert.isEmpty() || !key.isEmpty()) {
        b.clientCertificateFiles(Path.of(cert), Path.of(key));
      }
    }
    String credential = str(sc, "credential", "");
    if (!credential.isEmpty()) {
      b.credential(credential);
    }
    return b.build();
  }

  public static void main(String[] args) throws Exception {
    JsonObject sc =
        JsonParser.parseReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).getAsJsonObject();
    ManagedChannel channel = channel(sc);
    Driver d = new Driver(sc, channel);
    for (JsonElement step : sc.getAsJsonArray("steps")) {
      d.run(step.getAsJsonObject());
    }
    if (d.drive != null) {
      d.drive.close();
    }
    emit(line("type", "done"));
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    System.exit(0);
  }
}
