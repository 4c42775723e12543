package com.avatargateway.client;

import com.avatargateway.gateway.v1.AvatarGatewayGrpc;
import com.avatargateway.gateway.v1.DriveRequest;
import com.avatargateway.gateway.v1.DriveResponse;
import com.avatargateway.gateway.v1.DriveStarted;
import com.avatargateway.gateway.v1.ListVendorsRequest;
import com.avatargateway.gateway.v1.ListVendorsResponse;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerCredentials;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.TlsServerCredentials;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.nio.file.Path;
import java.security.cert.Certificate;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * Test support: real grpc-java servers on loopback (grpc-netty-shaded) with the AvatarGateway
 * service reduced to ListVendors and Drive, recording what each call carried.
 */
public final class LoopbackGateway implements AutoCloseable {
  /** The fixed test certificates (Surefire runs in clients/java). */
  public static final Path TLS = Path.of("..", "testdata", "tls");

  // A TLS client against a plaintext server makes the server log a bad preface at INFO.
  private static final Logger SERVER_TRANSPORT_LOG =
      Logger.getLogger("io.grpc.netty.shaded.io.grpc.netty.NettyServerTransport");

  static {
    SERVER_TRANSPORT_LOG.setLevel(Level.WARNING);
  }

  /**
   * What a server saw of one call.
   *
   * @param method the bare method name
   * @param authorization the {@code authorization} header, or null
   * @param authority the call's {@code :authority}
   * @param tls whether the call came over TLS
   * @param peerUris the URI SANs of the client certificate (empty without one)
   */
  public record Seen(String method, String authorization, String authority, boolean tls, List<String> peerUris) {}

  /** Every call any server of this instance saw, in order. */
  public final List<Seen> seen = new CopyOnWriteArrayList<>();

  /** The request headers of each call in {@link #seen}, at the same index. */
  public final List<Metadata> headers = new CopyOnWriteArrayList<>();

  private final List<Server> servers = new ArrayList<>();

  /** ListVendors answers an empty list; Drive answers the config with started, ends on half-close. */
  private static final class Service extends AvatarGatewayGrpc.AvatarGatewayImplBase {
    @Override
    public void listVendors(ListVendorsRequest request, StreamObserver<ListVendorsResponse> out) {
      out.onNext(ListVendorsResponse.getDefaultInstance());
      out.onCompleted();
    }

    @Override
    public StreamObserver<DriveRequest> drive(StreamObserver<DriveResponse> out) {
      return new StreamObserver<>() {
        @Override
        public void onNext(DriveRequest r) {
          if (r.hasConfig()) {
            out.onNext(DriveResponse.newBuilder()
                .setStarted(DriveStarted.newBuilder().setSession(r.getConfig().getSession()))
                .build());
          }
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          out.onCompleted();
        }
      };
    }
  }

  private final ServerInterceptor recorder =
      new ServerInterceptor() {
        @Override
        public <Q, R> ServerCall.Listener<Q> interceptCall(
            ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
          SSLSession ssl = call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION);
          Metadata copy = new Metadata();
          copy.merge(headers);
          LoopbackGateway.this.headers.add(copy);
          seen.add(new Seen(call.getMethodDescriptor().getBareMethodName(),
              headers.get(BearerCredentials.AUTHORIZATION), call.getAuthority(), ssl != null, peerUris(ssl)));
          return next.startCall(call, headers);
        }
      };

  private static List<String> peerUris(SSLSession ssl) {
    List<String> uris = new ArrayList<>();
    if (ssl == null) {
      return uris;
    }
    try {
      Certificate leaf = ssl.getPeerCertificates()[0];
      Collection<List<?>> sans = ((X509Certificate) leaf).getSubjectAlternativeNames();
      if (sans != null) {
        for (List<?> san : sans) {
          if ((Integer) san.get(0) == 6) { // uniformResourceIdentifier
            uris.add((String) san.get(1));
          }
        }
      }
    } catch (SSLPeerUnverifiedException e) {
      // no client certificate
    } catch (CertificateParsingException e) {
      throw new IllegalStateException(e);
    }
    return uris;
  }

  /** Starts a server with {@code creds} on a free loopback port and returns the port. */
  public int serve(ServerCredentials creds) throws IOException {
    Server s = Grpc.newServerBuilderForPort(0, creds)
        .addService(ServerInterceptors.intercept(new Service(), recorder))
        .build()
        .start();
    servers.add(s);
    return s.getPort();
  }

  /**
   * Starts a TLS server with server.pem (localhost, 127.0.0.1, ::1); unless {@code clientAuth} is
   * NONE, it verifies client certificates against ca.pem.
   */
  public int serveTls(TlsServerCredentials.ClientAuth clientAuth) throws IOException {
    TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder()
        .keyManager(TLS.resolve("server.pem").toFile(), TLS.resolve("server-key.pem").toFile());
    if (clientAuth != TlsServerCredentials.ClientAuth.NONE) {
      b.trustManager(TLS.resolve("ca.pem").toFile()).clientAuth(clientAuth);
    }
    return serve(b.build());
  }

  /** Stops every server. */
  @Override
  public void close() throws InterruptedException {
    for (Server s : servers) {
      s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
