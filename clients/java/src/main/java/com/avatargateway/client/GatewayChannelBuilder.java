package com.avatargateway.client;

import io.grpc.ChannelCredentials;
import io.grpc.CompositeChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.ManagedChannelRegistry;
import io.grpc.TlsChannelCredentials;
import io.opentelemetry.api.OpenTelemetry;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * Builds a {@link ManagedChannel} to the gateway: TLS by default, an optional client certificate
 * (mutual TLS), and an optional credential sent on every call. A thin layer over grpc-java's
 * {@link TlsChannelCredentials}, {@link CompositeChannelCredentials} and {@link BearerCredentials}.
 *
 * <pre>{@code
 * ManagedChannel channel = GatewayChannelBuilder.forTarget("gateway.example.com:443")
 *     .trustedCaFile(Path.of("ca.pem"))                        // omit to trust the system roots
 *     .credential(System.getenv("AVATAR_GATEWAY_CREDENTIAL"))  // API key or JWT
 *     .build();
 * var stub = AvatarGatewayGrpc.newStub(channel);              // DriveStream.open(stub, ...) etc.
 * }</pre>
 *
 * <p>The local sandbox listens without TLS: ask for it explicitly with {@link #usePlaintext()}.
 * A credential over plaintext is refused unless {@link #allowCredentialOverPlaintext()} is also
 * set. grpc-java itself applies call credentials on any channel (it only reports the transport's
 * {@link io.grpc.SecurityLevel} to them), so the check is in {@link BearerCredentials}: a call
 * over a channel without TLS fails with UNAUTHENTICATED before its headers are sent, unless the
 * plaintext was allowed here.
 *
 * <p>Every call carries the caller's OpenTelemetry trace context (the span in {@code
 * io.opentelemetry.context.Context.current()} when the call is made) as the W3C Trace Context
 * metadata {@code traceparent} and {@code tracestate}, plus the fields of the application's
 * propagators, through {@link TraceContextInterceptor}: the gateway's spans join the caller's
 * trace. Without a span, no {@code traceparent} is sent. See {@link #propagateTraceContext} and
 * {@link #openTelemetry}.
 *
 * <p>The setters record options ({@link #credential} also checks its value); {@link #build()}
 * reads the files and checks the combination. A builder is not thread-safe.
 */
public final class GatewayChannelBuilder {
  private final String target;
  private final String host;
  private final int port;
  private Path caFile;
  private byte[] caPem;
  private Path certFile;
  private Path keyFile;
  private byte[] certPem;
  private byte[] keyPem;
  private String authority;
  private String credential;
  private boolean plaintext;
  private boolean credentialOverPlaintext;
  private boolean propagateTraceContext = true;
  private OpenTelemetry openTelemetry;

  private GatewayChannelBuilder(String target, String host, int port) {
    this.target = target;
    this.host = host;
    this.port = port;
  }

  /**
   * A builder for a gRPC target: {@code "host:port"}, or a URI such as {@code
   * "dns:///gateway.example.com:443"}. The TLS server name is the target's host unless {@link
   * #overrideAuthority} says otherwise.
   */
  public static GatewayChannelBuilder forTarget(String target) {
    if (target == null || target.isEmpty()) {
      throw new IllegalArgumentException("the target is empty");
    }
    return new GatewayChannelBuilder(target, null, 0);
  }

  /** A builder for {@code host} (a name or an IP address) and {@code port}. */
  public static GatewayChannelBuilder forAddress(String host, int port) {
    if (host == null || host.isEmpty()) {
      throw new IllegalArgumentException("the host is empty");
    }
    return new GatewayChannelBuilder(null, host, port);
  }

  /**
   * Trusts only the CA certificates in this PEM file to sign the gateway's certificate, instead of
   * the system roots. Replaces an earlier {@link #trustedCaPem}.
   */
  public GatewayChannelBuilder trustedCaFile(Path caPemFile) {
    this.caFile = Objects.requireNonNull(caPemFile, "caPemFile");
    this.caPem = null;
    return this;
  }

  /** As {@link #trustedCaFile}, with the PEM itself. Replaces an earlier {@link #trustedCaFile}. */
  public GatewayChannelBuilder trustedCaPem(byte[] caPem) {
    this.caPem = caPem.clone();
    this.caFile = null;
    return this;
  }

  /**
   * Presents this client certificate for mutual TLS: {@code certChainPemFile} holds the
   * certificate (then any intermediates) and {@code privateKeyPemFile} its unencrypted PKCS#8
   * private key ({@code BEGIN PRIVATE KEY}). Replaces an earlier {@link #clientCertificatePem}.
   * The gateway then sees the certificate's identity (for example a SPIFFE ID in a URI SAN). A key
   * that does not match the certificate is only detected in the handshake: UNAVAILABLE.
   */
  public GatewayChannelBuilder clientCertificateFiles(Path certChainPemFile, Path privateKeyPemFile) {
    this.certFile = Objects.requireNonNull(certChainPemFile, "certChainPemFile");
    this.keyFile = Objects.requireNonNull(privateKeyPemFile, "privateKeyPemFile");
    this.certPem = null;
    this.keyPem = null;
    return this;
  }

  /** As {@link #clientCertificateFiles}, with the PEM itself. */
  public GatewayChannelBuilder clientCertificatePem(byte[] certChainPem, byte[] privateKeyPem) {
    this.certPem = certChainPem.clone();
    this.keyPem = privateKeyPem.clone();
    this.certFile = null;
    this.keyFile = null;
    return this;
  }

  /**
   * Uses {@code authority} as the call's {@code :authority} and, over TLS, as the server name
   * (SNI) the gateway's certificate must match, instead of the target's host: for example {@code
   * "localhost"} when dialing {@code 127.0.0.1}, or the public name when dialing through a tunnel.
   */
  public GatewayChannelBuilder overrideAuthority(String authority) {
    this.authority = Objects.requireNonNull(authority, "authority");
    return this;
  }

  /**
   * Sends {@code credential}, a tenant API key or a JWT (bare, without {@code "Bearer "}), as
   * {@code authorization: Bearer <credential>} on every call of the channel, unary and streaming.
   * The value is checked here and never appears in an exception message.
   *
   * @throws IllegalArgumentException when it is null, empty, or not printable ASCII without spaces
   */
  public GatewayChannelBuilder credential(String credential) {
    this.credential = BearerCredentials.validate(credential);
    return this;
  }

  /**
   * Connects without TLS: for the local sandbox and development only. Anyone on the path can read
   * and change the traffic, so no CA or client certificate may be set, and a credential is refused
   * unless {@link #allowCredentialOverPlaintext()} is set too.
   */
  public GatewayChannelBuilder usePlaintext() {
    this.plaintext = true;
    return this;
  }

  /**
   * With {@link #usePlaintext()}, sends the {@link #credential} in clear text anyway: only for a
   * gateway on the same host (the local sandbox with authentication on), where nothing crosses a
   * network. Without this, a plaintext channel with a credential is refused, so a credential never
   * leaks because TLS was forgotten. No effect on a TLS channel.
   */
  public GatewayChannelBuilder allowCredentialOverPlaintext() {
    this.credentialOverPlaintext = true;
    return this;
  }

  /**
   * Whether every call carries the caller's OpenTelemetry trace context (default {@code true}; see
   * {@link TraceContextInterceptor}). Turn it off when another instrumentation of grpc-java already
   * propagates it on this channel, or the trace context must not reach the gateway.
   */
  public GatewayChannelBuilder propagateTraceContext(boolean propagate) {
    this.propagateTraceContext = propagate;
    return this;
  }

  /**
   * Propagates the trace context with the propagators of {@code openTelemetry} (besides the W3C
   * Trace Context, always sent) instead of those of {@code GlobalOpenTelemetry}: for an application
   * that passes its {@code OpenTelemetrySdk} around rather than registering it globally.
   */
  public GatewayChannelBuilder openTelemetry(OpenTelemetry openTelemetry) {
    this.openTelemetry = Objects.requireNonNull(openTelemetry, "openTelemetry");
    return this;
  }

  /**
   * The grpc-java builder with the credentials, the authority and the trace context interceptor
   * set, for further options (keepalive, message size, executor, ...) before {@code build()}.
   *
   * @throws IOException when a CA, certificate or key file cannot be read
   * @throws IllegalStateException when the options conflict: a CA or client certificate with
   *     {@link #usePlaintext()}, or a credential over plaintext without {@link
   *     #allowCredentialOverPlaintext()}
   * @throws IllegalArgumentException when grpc-java cannot use the TLS material (a CA PEM without
   *     a certificate, a key that is not an unencrypted PKCS#8 PEM)
   */
  public ManagedChannelBuilder<?> toManagedChannelBuilder() throws IOException {
    ChannelCredentials creds = plaintext ? plaintextCredentials() : tlsCredentials();
    if (credential != null) {
      creds =
          CompositeChannelCredentials.create(
              creds,
              plaintext ? BearerCredentials.allowingPlaintext(credential) : BearerCredentials.of(credential));
    }
    ManagedChannelBuilder<?> builder;
    try {
      builder =
          target != null
              ? Grpc.newChannelBuilder(target, creds)
              : Grpc.newChannelBuilderForAddress(host, port, creds);
    } catch (ManagedChannelRegistry.ProviderNotFoundException e) {
      // grpc-netty reports TLS material it cannot load this way ("no functional provider").
      throw new IllegalArgumentException("cannot set up the gateway channel: " + e.getMessage(), e);
    }
    if (authority != null) {
      builder.overrideAuthority(authority);
    }
    if (propagateTraceContext) {
      builder.intercept(
          openTelemetry != null ? TraceContextInterceptor.create(openTelemetry) : TraceContextInterceptor.create());
    }
    return builder;
  }

  /**
   * Builds the channel. It connects lazily: an unreachable gateway, a certificate that does not
   * verify or a refused client certificate surface as UNAVAILABLE on the first call.
   *
   * @throws IOException when a CA, certificate or key file cannot be read
   * @throws IllegalStateException when the options conflict (see {@link #toManagedChannelBuilder})
   * @throws IllegalArgumentException when grpc-java cannot use the TLS material
   */
  public ManagedChannel build() throws IOException {
    return toManagedChannelBuilder().build();
  }

  private ChannelCredentials plaintextCredentials() {
    if (caFile != null || caPem != null || certFile != null || certPem != null) {
      throw new IllegalStateException("usePlaintext() excludes a trusted CA and a client certificate");
    }
    if (credential != null && !credentialOverPlaintext) {
      throw new IllegalStateException(
          "refusing to send the credential over plaintext: use TLS, or also set "
              + "allowCredentialOverPlaintext() for a local sandbox");
    }
    return InsecureChannelCredentials.create();
  }

  private ChannelCredentials tlsCredentials() throws IOException {
    TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder();
    if (caFile != null) {
      tls.trustManager(caFile.toFile());
    } else if (caPem != null) {
      tls.trustManager(new ByteArrayInputStream(caPem));
    }
    if (certFile != null) {
      tls.keyManager(certFile.toFile(), keyFile.toFile());
    } else if (certPem != null) {
      tls.keyManager(new ByteArrayInputStream(certPem), new ByteArrayInputStream(keyPem));
    }
    return tls.build();
  }
}
