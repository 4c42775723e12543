package com.avatargateway.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.protobuf.StatusProto;
import java.util.Optional;

/** Reads the {@code google.rpc.ErrorInfo} the gateway puts in every failed call's status. */
public final class ErrorInfos {
  /** ErrorInfo domain of every error the gateway emits. */
  public static final String DOMAIN = "avatargateway.dev";

  private ErrorInfos() {}

  /**
   * The ErrorInfo of a failed gateway call (a {@code StatusRuntimeException} or {@code
   * StatusException}), decoded from the {@code google.rpc.Status} in the {@code
   * grpc-status-details-bin} trailer; empty when the error carries none.
   */
  public static Optional<ErrorInfo> fromThrowable(Throwable t) {
    com.google.rpc.Status status = StatusProto.fromThrowable(t);
    if (status == null) {
      return Optional.empty();
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        try {
          return Optional.of(detail.unpack(ErrorInfo.class));
        } catch (InvalidProtocolBufferException e) {
          return Optional.empty();
        }
      }
    }
    return Optional.empty();
  }
}
