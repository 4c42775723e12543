package com.avatargateway.client;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.SecurityLevel;
import io.grpc.Status;
import java.util.concurrent.Executor;

/**
 * Per-call credentials that send a gateway credential, a tenant API key or a JWT, as {@code
 * authorization: Bearer <credential>} on every call they are attached to.
 *
 * <p>{@link GatewayChannelBuilder#credential} attaches them to a whole channel. Use them directly
 * when one channel serves several tenants: {@code stub.withCallCredentials(BearerCredentials.of(key))}.
 *
 * <p>The credential only goes over a transport that encrypts it: on a plaintext channel, a call
 * fails with UNAUTHENTICATED before anything is sent (grpc-java itself would send call credentials
 * in clear text; the check is here, on the {@link SecurityLevel} the transport reports).
 */
public final class BearerCredentials extends CallCredentials {
  /** The metadata key the gateway reads the credential from. */
  public static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final String header;
  private final boolean allowPlaintext;

  private BearerCredentials(String credential, boolean allowPlaintext) {
    this.header = "Bearer " + validate(credential);
    this.allowPlaintext = allowPlaintext;
  }

  /**
   * Credentials that send {@code credential} (the bare API key or JWT, without {@code "Bearer "})
   * on calls over TLS only.
   *
   * @throws IllegalArgumentException when {@code credential} is null, empty, or holds a character
   *     other than printable ASCII without spaces (a header value cannot carry it)
   */
  public static BearerCredentials of(String credential) {
    return new BearerCredentials(credential, false);
  }

  /** As {@link #of}, also over plaintext: only {@link GatewayChannelBuilder} asks for that. */
  static BearerCredentials allowingPlaintext(String credential) {
    return new BearerCredentials(credential, true);
  }

  static String validate(String credential) {
    if (credential == null || credential.isEmpty()) {
      throw new IllegalArgumentException("the credential is empty");
    }
    for (int i = 0; i < credential.length(); i++) {
      char c = credential.charAt(i);
      if (c <= 0x20 || c >= 0x7f) {
        // The message never repeats the credential: it is a secret.
        throw new IllegalArgumentException(
            "the credential must be the bare API key or JWT (printable ASCII, no spaces, no \"Bearer \")");
      }
    }
    return credential;
  }

  @Override
  public void applyRequestMetadata(RequestInfo requestInfo, Executor appExecutor, MetadataApplier applier) {
    if (!allowPlaintext && requestInfo.getSecurityLevel() != SecurityLevel.PRIVACY_AND_INTEGRITY) {
      applier.fail(
          Status.UNAUTHENTICATED.withDescription(
              "refusing to send the gateway credential over a channel without TLS (security level "
                  + requestInfo.getSecurityLevel() + ")"));
      return;
    }
    Metadata headers = new Metadata();
    headers.put(AUTHORIZATION, header);
    applier.apply(headers);
  }

  @Override
  public String toString() {
    return "BearerCredentials[redacted]";
  }
}
