package com.avatargateway.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.avatargateway.client.LoopbackGateway;
import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.ListVendorsRequest;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.TlsServerCredentials;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The driver's {@code tls} and {@code credential} payload fields, against a loopback server. */
class DriverChannelTest {
  private final LoopbackGateway gateway = new LoopbackGateway();

  @AfterEach
  void stop() throws InterruptedException {
    gateway.close();
  }

  private static String abs(String name) {
    return LoopbackGateway.TLS.resolve(name).toAbsolutePath().toString();
  }

  private static void listVendors(String payload) throws Exception {
    JsonObject sc = JsonParser.parseString(payload).getAsJsonObject();
    ManagedChannel channel = Driver.channel(sc);
    try {
      AvatarGatewayGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
          .listVendors(ListVendorsRequest.getDefaultInstance());
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void tlsWithAClientCertificateAServerNameAndACredential() throws Exception {
    int port = gateway.serveTls(TlsServerCredentials.ClientAuth.REQUIRE);
    listVendors("{\"target\": \"127.0.0.1:" + port + "\", \"steps\": [], \"credential\": \"key-1\", \"tls\": {"
        + "\"ca_file\": \"" + abs("ca.pem") + "\", \"server_name\": \"localhost\", "
        + "\"cert_file\": \"" + abs("client.pem") + "\", \"key_file\": \"" + abs("client-key.pem") + "\"}}");
    assertEquals(
        List.of(new LoopbackGateway.Seen("ListVendors", "Bearer key-1", "localhost", true,
            List.of("spiffe://test.avatargateway.dev/tenant/acme"))),
        gateway.seen);
  }

  @Test
  void withoutTlsTheDriverDialsPlaintextAsBefore() throws Exception {
    int port = gateway.serve(InsecureServerCredentials.create());
    listVendors("{\"target\": \"127.0.0.1:" + port + "\", \"steps\": []}");
    listVendors("{\"target\": \"127.0.0.1:" + port + "\", \"steps\": [], \"credential\": \"key-2\"}");
    assertEquals(2, gateway.seen.size());
    assertNull(gateway.seen.get(0).authorization());
    assertEquals("Bearer key-2", gateway.seen.get(1).authorization());
    assertEquals(List.of(false, false), gateway.seen.stream().map(LoopbackGateway.Seen::tls).toList());
  }
}
