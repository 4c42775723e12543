package com.avatargateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.avatargateway.client.LoopbackGateway.Seen;
import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.ListVendorsRequest;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ServerCredentials;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsServerCredentials;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link GatewayChannelBuilder} and {@link BearerCredentials} against a real grpc-java server on
 * loopback ({@link LoopbackGateway}), with the fixed certificates in clients/testdata/tls.
 */
class GatewayChannelBuilderTest {
  private static final Path TLS = LoopbackGateway.TLS;
  private static final String SPIFFE_ID = "spiffe://test.avatargateway.dev/tenant/acme";
  private static final String API_KEY = "agk_test.Key-123_abc";
  private static final String JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl";

  private final LoopbackGateway gateway = new LoopbackGateway();
  private final List<Seen> seen = gateway.seen;
  private final List<ManagedChannel> channels = new ArrayList<>();

  private int serve(ServerCredentials creds) throws IOException {
    return gateway.serve(creds);
  }

  private int serveTls(TlsServerCredentials.ClientAuth clientAuth) throws IOException {
    return gateway.serveTls(clientAuth);
  }

  private ManagedChannel channel(GatewayChannelBuilder b) throws IOException {
    ManagedChannel c = b.build();
    channels.add(c);
    return c;
  }

  @AfterEach
  void stop() throws InterruptedException {
    for (ManagedChannel c : channels) {
      c.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    gateway.close();
  }

  /** One unary call and one Drive (config, started, half-close, OK) on {@code channel}. */
  static void unaryAndStreaming(ManagedChannel channel) throws InterruptedException {
    AvatarGatewayGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
        .listVendors(ListVendorsRequest.getDefaultInstance());
    try (DriveStream d = DriveStream.open(
        AvatarGatewayGrpc.newStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS), "sessions/s1", Audio.linear16(16000, 1))) {
      assertEquals("sessions/s1", d.started().getSession());
      d.halfClose();
      assertNull(d.next());
    }
  }

  private static Status.Code unaryFails(ManagedChannel channel) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> AvatarGatewayGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
            .listVendors(ListVendorsRequest.getDefaultInstance()));
    return e.getStatus().getCode();
  }

  @Test
  void tlsWithTheCustomCaSendsTheCredentialOnUnaryAndStreamingCalls() throws Exception {
    int port = serveTls(TlsServerCredentials.ClientAuth.NONE);
    unaryAndStreaming(channel(GatewayChannelBuilder.forAddress("localhost", port)
        .trustedCaFile(TLS.resolve("ca.pem"))
        .credential(API_KEY)));
    assertEquals(
        List.of(new Seen("ListVendors", "Bearer " + API_KEY, "localhost:" + port, true, List.of()),
            new Seen("Drive", "Bearer " + API_KEY, "localhost:" + port, true, List.of())),
        seen);
  }

  @Test
  void overrideAuthorityIsTheTlsServerName() throws Exception {
    int port = serveTls(TlsServerCredentials.ClientAuth.NONE);
    ManagedChannel ok = channel(GatewayChannelBuilder.forTarget("127.0.0.1:" + port)
        .trustedCaFile(TLS.resolve("ca.pem"))
        .overrideAuthority("localhost"));
    AvatarGatewayGrpc.newBlockingStub(ok).withDeadlineAfter(5, TimeUnit.SECONDS)
        .listVendors(ListVendorsRequest.getDefaultInstance());
    assertEquals("localhost", seen.get(0).authority());
    // The certificate is not valid for this name: hostname verification uses the override.
    ManagedChannel wrong = channel(GatewayChannelBuilder.forTarget("127.0.0.1:" + port)
        .trustedCaFile(TLS.resolve("ca.pem"))
        .overrideAuthority("gateway.invalid"));
    assertEquals(Status.Code.UNAVAILABLE, unaryFails(wrong));
    assertEquals(1, seen.size());
  }

  @Test
  void aServerCertificateFromAnotherCaOrNotFromTheSystemRootsIsRefused() throws Exception {
    int port = serveTls(TlsServerCredentials.ClientAuth.NONE);
    ManagedChannel otherCa = channel(GatewayChannelBuilder.forAddress("localhost", port)
        .trustedCaFile(TLS.resolve("other-ca.pem"))
        .credential(API_KEY));
    assertEquals(Status.Code.UNAVAILABLE, unaryFails(otherCa));
    ManagedChannel systemRoots = channel(GatewayChannelBuilder.forAddress("localhost", port).credential(API_KEY));
    assertEquals(Status.Code.UNAVAILABLE, unaryFails(systemRoots));
    assertTrue(seen.isEmpty(), "no call reached the server: " + seen);
  }

  @Test
  void mutualTlsPresentsTheClientCertificateWithItsSpiffeId() throws Exception {
    int port = serveTls(TlsServerCredentials.ClientAuth.REQUIRE);
    unaryAndStreaming(channel(GatewayChannelBuilder.forAddress("localhost", port)
        .trustedCaPem(Files.readAllBytes(TLS.resolve("ca.pem")))
        .clientCertificatePem(Files.readAllBytes(TLS.resolve("client.pem")), Files.readAllBytes(TLS.resolve("client-key.pem")))
        .credential(JWT)));
    unaryAndStreaming(channel(GatewayChannelBuilder.forAddress("localhost", port)
        .trustedCaFile(TLS.resolve("ca.pem"))
        .clientCertificateFiles(TLS.resolve("client.pem"), TLS.resolve("client-key.pem"))));
    assertEquals(4, seen.size());
    for (Seen s : seen) {
      assertEquals(List.of(SPIFFE_ID), s.peerUris(), s.toString());
    }
    assertEquals("Bearer " + JWT, seen.get(1).authorization());
    assertNull(seen.get(3).authorization());
    // Without a client certificate, the server ends the handshake.
    ManagedChannel noCert = channel(GatewayChannelBuilder.forAddress("localhost", port)
        .trustedCaFile(TLS.resolve("ca.pem"))
        .credential(JWT));
    assertEquals(Status.Code.UNAVAILABLE, unaryFails(noCert));
    assertEquals(4, seen.size());
  }

  @Test
  void plaintextMustBeAskedForAndACredentialOverItAllowedExplicitly() throws Exception {
    int port = serve(InsecureServerCredentials.create());
    // TLS is the default: it does not talk to a plaintext server.
    assertEquals(Status.Code.UNAVAILABLE,
        unaryFails(channel(GatewayChannelBuilder.forAddress("127.0.0.1", port).credential(API_KEY))));
    assertTrue(seen.isEmpty(), seen.toString());

    IllegalStateException refused = assertThrows(IllegalStateException.class,
        () -> GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().credential(API_KEY).build());
    assertFalse(refused.getMessage().contains(API_KEY), refused.getMessage());
    assertThrows(IllegalStateException.class,
        () -> GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().trustedCaFile(TLS.resolve("ca.pem")).build());
    assertThrows(IllegalStateException.class,
        () -> GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
            .clientCertificateFiles(TLS.resolve("client.pem"), TLS.resolve("client-key.pem")).build());

    unaryAndStreaming(channel(GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()));
    // The local sandbox case: grpc-java applies the call credentials on a plaintext channel too.
    unaryAndStreaming(channel(GatewayChannelBuilder.forAddress("127.0.0.1", port)
        .usePlaintext().credential(API_KEY).allowCredentialOverPlaintext()));
    assertEquals(List.of(false, false, false, false), seen.stream().map(Seen::tls).toList());
    assertEquals(List.of("ListVendors", "Drive", "ListVendors", "Drive"), seen.stream().map(Seen::method).toList());
    assertNull(seen.get(0).authorization());
    assertNull(seen.get(1).authorization());
    assertEquals("Bearer " + API_KEY, seen.get(2).authorization());
    assertEquals("Bearer " + API_KEY, seen.get(3).authorization());
  }

  @Test
  void bearerCredentialsPerCallGoOverTlsOnly() throws Exception {
    int tlsPort = serveTls(TlsServerCredentials.ClientAuth.NONE);
    ManagedChannel tls = channel(GatewayChannelBuilder.forAddress("localhost", tlsPort).trustedCaFile(TLS.resolve("ca.pem")));
    AvatarGatewayGrpc.newBlockingStub(tls).withCallCredentials(BearerCredentials.of(API_KEY))
        .withDeadlineAfter(5, TimeUnit.SECONDS).listVendors(ListVendorsRequest.getDefaultInstance());
    assertEquals("Bearer " + API_KEY, seen.get(0).authorization());

    int plainPort = serve(InsecureServerCredentials.create());
    ManagedChannel plain = Grpc.newChannelBuilderForAddress("127.0.0.1", plainPort, InsecureChannelCredentials.create()).build();
    channels.add(plain);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> AvatarGatewayGrpc.newBlockingStub(plain).withCallCredentials(BearerCredentials.of(API_KEY))
            .withDeadlineAfter(5, TimeUnit.SECONDS).listVendors(ListVendorsRequest.getDefaultInstance()));
    assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
    assertEquals(1, seen.size(), "the call did not reach the plaintext server: " + seen);
  }

  @Test
  void theCredentialIsCheckedAndNeverEchoed() {
    for (String bad : new String[] {"", "Bearer " + API_KEY, API_KEY + "\n", "clé-" + API_KEY}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> GatewayChannelBuilder.forTarget("localhost:1").credential(bad));
      assertFalse(e.getMessage().contains(API_KEY), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> BearerCredentials.of(bad));
    }
    assertThrows(IllegalArgumentException.class, () -> GatewayChannelBuilder.forTarget("localhost:1").credential(null));
    assertFalse(BearerCredentials.of(API_KEY).toString().contains(API_KEY));
  }

  @Test
  void unreadableOrBrokenTlsMaterialFailsTheBuild() {
    assertThrows(IOException.class,
        () -> GatewayChannelBuilder.forTarget("localhost:1").trustedCaFile(TLS.resolve("missing.pem")).build());
    assertThrows(IllegalArgumentException.class,
        () -> GatewayChannelBuilder.forTarget("localhost:1").trustedCaPem("not a PEM".getBytes()).build());
    assertThrows(IllegalArgumentException.class,
        () -> GatewayChannelBuilder.forTarget("localhost:1").trustedCaFile(TLS.resolve("ca.pem"))
            .clientCertificateFiles(TLS.resolve("client.pem"), TLS.resolve("ca.pem")).build());
  }
}
