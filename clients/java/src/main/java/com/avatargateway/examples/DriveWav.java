package com.avatargateway.examples;

import com.avatargateway.client.Audio;
import com.avatargateway.client.DriveStream;
import com.avatargateway.client.ErrorInfos;
import com.avatargateway.client.GatewayChannelBuilder;
import com.avatargateway.client.Wav;
import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.CloseSessionRequest;
import com.avatargateway.gateway.v1.CreateSessionRequest;
import com.avatargateway.gateway.v1.DriveResponse;
import com.avatargateway.gateway.v1.ListAvatarsRequest;
import com.avatargateway.gateway.v1.ListAvatarsResponse;
import com.avatargateway.gateway.v1.Session;
import com.google.protobuf.TextFormat;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Creates an avatar session, drives it with a WAV file at real time, ends the turn, interrupts,
 * prints every event and closes the session. Without {@code --avatar}, it takes the vendor's first
 * avatar from ListAvatars.
 *
 * <p>It connects with TLS, trusting the system roots or {@code --ca-file} ({@code --server-name}
 * overrides the name the certificate must match), presents {@code --cert-file} and {@code
 * --key-file} for mutual TLS, and sends {@code --credential}, an API key or a JWT, as {@code
 * authorization: Bearer ...} on every call. The credential defaults to {@code
 * $AVATAR_GATEWAY_CREDENTIAL}, which, unlike a command line, other users cannot read in the process
 * list. The local sandbox has no TLS: pass {@code --plaintext}, plus {@code
 * --allow-credential-over-plaintext} if it wants a credential.
 *
 * <pre>
 * cd clients/java &amp;&amp; mvn -q package
 * java -cp "target/avatar-gateway-client-0.1.0.jar:target/lib/*" com.avatargateway.examples.DriveWav \
 *     --target 127.0.0.1:50051 --plaintext --wav ../testdata/sample-16k-mono.wav
 * java -cp ... com.avatargateway.examples.DriveWav --target gateway.example.com:443 --ca-file ca.pem
 * </pre>
 */
public final class DriveWav {
  private DriveWav() {}

  public static void main(String[] args) throws Exception {
    String target = System.getenv().getOrDefault("AVATAR_GATEWAY_TARGET", "127.0.0.1:50051");
    String vendor = "zegocloud";
    String avatar = ""; // empty: the vendor's first avatar
    String wav = "../testdata/sample-16k-mono.wav";
    String caFile = "";
    String serverName = "";
    String certFile = "";
    String keyFile = "";
    String credential = System.getenv().getOrDefault("AVATAR_GATEWAY_CREDENTIAL", "");
    boolean plaintext = false;
    boolean credentialOverPlaintext = false;
    for (int i = 0; i < args.length; i++) {
      String flag = args[i];
      switch (flag) {
        case "--plaintext" -> plaintext = true;
        case "--allow-credential-over-plaintext" -> credentialOverPlaintext = true;
        default -> {
          if (i + 1 >= args.length) {
            throw new IllegalArgumentException("flag " + flag + " needs a value");
          }
          String value = args[++i];
          switch (flag) {
            case "--target" -> target = value;
            case "--vendor" -> vendor = value;
            case "--avatar" -> avatar = value;
            case "--wav" -> wav = value;
            case "--ca-file" -> caFile = value;
            case "--server-name" -> serverName = value;
            case "--cert-file" -> certFile = value;
            case "--key-file" -> keyFile = value;
            case "--credential" -> credential = value;
            default -> throw new IllegalArgumentException("unknown flag " + flag);
          }
        }
      }
    }
    Audio audio = Wav.read(Path.of(wav));
    ManagedChannel channel;
    try {
      GatewayChannelBuilder builder = GatewayChannelBuilder.forTarget(target);
      if (plaintext) {
        builder.usePlaintext();
      }
      if (credentialOverPlaintext) {
        builder.allowCredentialOverPlaintext();
      }
      if (!caFile.isEmpty()) {
        builder.trustedCaFile(Path.of(caFile));
      }
      if (!serverName.isEmpty()) {
        builder.overrideAuthority(serverName);
      }
      if (!certFile.isEmpty() || !keyFile.isEmpty()) {
        builder.clientCertificateFiles(Path.of(certFile), Path.of(keyFile));
      }
      if (!credential.isEmpty()) {
        builder.credential(credential);
      }
      channel = builder.build();
    } catch (IOException | IllegalStateException | IllegalArgumentException e) {
      System.err.println("cannot connect to " + target + ": " + e.getMessage());
      System.exit(2);
      return;
    }
    try {
      run(channel, vendor, avatar, audio);
    } catch (StatusRuntimeException e) {
      System.err.println(describe(e));
      System.exit(1);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static void run(ManagedChannel channel, String vendor, String avatar, Audio audio) throws Exception {
    var blocking = AvatarGatewayGrpc.newBlockingStub(channel);
    TextFormat.Printer text = TextFormat.printer();
    if (avatar.isEmpty()) {
      avatar = firstAvatar(blocking, vendor);
    }
    Session session =
        blocking.withDeadlineAfter(60, TimeUnit.SECONDS)
            .createSession(CreateSessionRequest.newBuilder().setVendor(vendor).setAvatarId(avatar).build());
    System.out.println("session " + session.getName() + " ready: " + text.shortDebugString(session.getPlayback()));
    try (DriveStream drive = DriveStream.open(AvatarGatewayGrpc.newStub(channel), session.getName(), audio.format())) {
      System.out.println("started: " + text.shortDebugString(drive.started()));
      CountDownLatch speaking = new CountDownLatch(1);
      Thread printer =
          new Thread(
              () -> {
                try {
                  for (DriveResponse ev = drive.next(); ev != null; ev = drive.next()) {
                    System.out.println("event: " + text.shortDebugString(ev));
                    if (ev.hasSpeechStarted()) {
                      speaking.countDown();
                    }
                  }
                  System.out.println("drive ended: OK");
                } catch (StatusRuntimeException e) {
                  System.out.println(describe(e));
                } catch (Exception e) {
                  System.out.println("drive: " + e);
                }
              });
      printer.start();
      System.out.println("sending " + audio.duration().toMillis() + " ms of audio at real time");
      drive.sendPaced(audio, Duration.ofMillis(20));
      drive.endTurn();
      speaking.await(5, TimeUnit.SECONDS); // barge in once the avatar speaks (or after a while)
      drive.interrupt();
      drive.halfClose();
      printer.join();
    } finally {
      Session closed =
          blocking.withDeadlineAfter(10, TimeUnit.SECONDS)
              .closeSession(CloseSessionRequest.newBuilder().setName(session.getName()).build());
      System.out.println("session " + closed.getName() + " closed: " + closed.getState());
    }
  }

  /** The id of the first avatar the vendor lists. */
  private static String firstAvatar(AvatarGatewayGrpc.AvatarGatewayBlockingStub blocking, String vendor) {
    ListAvatarsResponse listed =
        blocking.withDeadlineAfter(30, TimeUnit.SECONDS)
            .listAvatars(ListAvatarsRequest.newBuilder().setParent("vendors/" + vendor).setPageSize(1).build());
    if (listed.getAvatarsCount() == 0) {
      System.err.println("vendor " + vendor + " lists no avatars: pass --avatar");
      System.exit(1);
    }
    return listed.getAvatars(0).getAvatarId();
  }

  private static String describe(StatusRuntimeException e) {
    Status s = e.getStatus();
    return ErrorInfos.fromThrowable(e)
        .map(i -> s.getCode() + " " + i.getReason() + " (" + i.getDomain() + " " + i.getMetadataMap() + "): "
            + s.getDescription())
        .orElse(s.getCode() + ": " + s.getDescription());
  }
}
