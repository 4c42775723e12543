package com.avatargateway.gateway.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * AvatarGateway drives real-time talking avatars from several cloud vendors
 * through one API.
 * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
 * stream on it and sends PCM audio or text; the vendor renders the avatar and
 * pushes the video to end users over its own RTC (see `Session.playback`).
 * Authentication. When the server is configured with API keys, every call but
 * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
 * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
 * to the tenant whose key created it: to any other tenant it answers exactly as
 * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
 * tenant. A key with the admin role sees every tenant's sessions.
 * Errors. Every failed call ends with a canonical status code and exactly one
 * `google.rpc.ErrorInfo` in the status details, with domain
 * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
 * and always present for a reason once emitted):
 * | reason                    | code                | metadata                              |
 * |---------------------------|---------------------|---------------------------------------|
 * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
 * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
 * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
 * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
 * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
 * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
 * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
 * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
 * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
 * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
 * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
 * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
 * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
 * | DRIVE_PREEMPTED           | ABORTED             | session                               |
 * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
 * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
 * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
 * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
 * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
 * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
 * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
 * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
 * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
 * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
 * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
 * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
 * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
 * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
 * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
 * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
 * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
 * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
 * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
 * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
 * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
 * | INTERNAL                  | INTERNAL            | exception                             |
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class AvatarGatewayGrpc {

  private AvatarGatewayGrpc() {}

  public static final java.lang.String SERVICE_NAME = "avatar.gateway.v1.AvatarGateway";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.CreateSessionRequest,
      com.avatargateway.gateway.v1.Session> getCreateSessionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CreateSession",
      requestType = com.avatargateway.gateway.v1.CreateSessionRequest.class,
      responseType = com.avatargateway.gateway.v1.Session.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.CreateSessionRequest,
      com.avatargateway.gateway.v1.Session> getCreateSessionMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.CreateSessionRequest, com.avatargateway.gateway.v1.Session> getCreateSessionMethod;
    if ((getCreateSessionMethod = AvatarGatewayGrpc.getCreateSessionMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getCreateSessionMethod = AvatarGatewayGrpc.getCreateSessionMethod) == null) {
          AvatarGatewayGrpc.getCreateSessionMethod = getCreateSessionMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.CreateSessionRequest, com.avatargateway.gateway.v1.Session>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CreateSession"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.CreateSessionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.Session.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("CreateSession"))
              .build();
        }
      }
    }
    return getCreateSessionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.GetSessionRequest,
      com.avatargateway.gateway.v1.Session> getGetSessionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetSession",
      requestType = com.avatargateway.gateway.v1.GetSessionRequest.class,
      responseType = com.avatargateway.gateway.v1.Session.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.GetSessionRequest,
      com.avatargateway.gateway.v1.Session> getGetSessionMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.GetSessionRequest, com.avatargateway.gateway.v1.Session> getGetSessionMethod;
    if ((getGetSessionMethod = AvatarGatewayGrpc.getGetSessionMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getGetSessionMethod = AvatarGatewayGrpc.getGetSessionMethod) == null) {
          AvatarGatewayGrpc.getGetSessionMethod = getGetSessionMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.GetSessionRequest, com.avatargateway.gateway.v1.Session>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetSession"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.GetSessionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.Session.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("GetSession"))
              .build();
        }
      }
    }
    return getGetSessionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListSessionsRequest,
      com.avatargateway.gateway.v1.ListSessionsResponse> getListSessionsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListSessions",
      requestType = com.avatargateway.gateway.v1.ListSessionsRequest.class,
      responseType = com.avatargateway.gateway.v1.ListSessionsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListSessionsRequest,
      com.avatargateway.gateway.v1.ListSessionsResponse> getListSessionsMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListSessionsRequest, com.avatargateway.gateway.v1.ListSessionsResponse> getListSessionsMethod;
    if ((getListSessionsMethod = AvatarGatewayGrpc.getListSessionsMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getListSessionsMethod = AvatarGatewayGrpc.getListSessionsMethod) == null) {
          AvatarGatewayGrpc.getListSessionsMethod = getListSessionsMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.ListSessionsRequest, com.avatargateway.gateway.v1.ListSessionsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListSessions"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.ListSessionsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.ListSessionsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("ListSessions"))
              .build();
        }
      }
    }
    return getListSessionsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.CloseSessionRequest,
      com.avatargateway.gateway.v1.Session> getCloseSessionMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "CloseSession",
      requestType = com.avatargateway.gateway.v1.CloseSessionRequest.class,
      responseType = com.avatargateway.gateway.v1.Session.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.CloseSessionRequest,
      com.avatargateway.gateway.v1.Session> getCloseSessionMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.CloseSessionRequest, com.avatargateway.gateway.v1.Session> getCloseSessionMethod;
    if ((getCloseSessionMethod = AvatarGatewayGrpc.getCloseSessionMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getCloseSessionMethod = AvatarGatewayGrpc.getCloseSessionMethod) == null) {
          AvatarGatewayGrpc.getCloseSessionMethod = getCloseSessionMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.CloseSessionRequest, com.avatargateway.gateway.v1.Session>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "CloseSession"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.CloseSessionRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.Session.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("CloseSession"))
              .build();
        }
      }
    }
    return getCloseSessionMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListAvatarsRequest,
      com.avatargateway.gateway.v1.ListAvatarsResponse> getListAvatarsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListAvatars",
      requestType = com.avatargateway.gateway.v1.ListAvatarsRequest.class,
      responseType = com.avatargateway.gateway.v1.ListAvatarsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListAvatarsRequest,
      com.avatargateway.gateway.v1.ListAvatarsResponse> getListAvatarsMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListAvatarsRequest, com.avatargateway.gateway.v1.ListAvatarsResponse> getListAvatarsMethod;
    if ((getListAvatarsMethod = AvatarGatewayGrpc.getListAvatarsMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getListAvatarsMethod = AvatarGatewayGrpc.getListAvatarsMethod) == null) {
          AvatarGatewayGrpc.getListAvatarsMethod = getListAvatarsMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.ListAvatarsRequest, com.avatargateway.gateway.v1.ListAvatarsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListAvatars"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.ListAvatarsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.ListAvatarsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("ListAvatars"))
              .build();
        }
      }
    }
    return getListAvatarsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListVendorsRequest,
      com.avatargateway.gateway.v1.ListVendorsResponse> getListVendorsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListVendors",
      requestType = com.avatargateway.gateway.v1.ListVendorsRequest.class,
      responseType = com.avatargateway.gateway.v1.ListVendorsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListVendorsRequest,
      com.avatargateway.gateway.v1.ListVendorsResponse> getListVendorsMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.ListVendorsRequest, com.avatargateway.gateway.v1.ListVendorsResponse> getListVendorsMethod;
    if ((getListVendorsMethod = AvatarGatewayGrpc.getListVendorsMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getListVendorsMethod = AvatarGatewayGrpc.getListVendorsMethod) == null) {
          AvatarGatewayGrpc.getListVendorsMethod = getListVendorsMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.ListVendorsRequest, com.avatargateway.gateway.v1.ListVendorsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListVendors"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.ListVendorsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.ListVendorsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("ListVendors"))
              .build();
        }
      }
    }
    return getListVendorsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.DriveRequest,
      com.avatargateway.gateway.v1.DriveResponse> getDriveMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Drive",
      requestType = com.avatargateway.gateway.v1.DriveRequest.class,
      responseType = com.avatargateway.gateway.v1.DriveResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
  public static io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.DriveRequest,
      com.avatargateway.gateway.v1.DriveResponse> getDriveMethod() {
    io.grpc.MethodDescriptor<com.avatargateway.gateway.v1.DriveRequest, com.avatargateway.gateway.v1.DriveResponse> getDriveMethod;
    if ((getDriveMethod = AvatarGatewayGrpc.getDriveMethod) == null) {
      synchronized (AvatarGatewayGrpc.class) {
        if ((getDriveMethod = AvatarGatewayGrpc.getDriveMethod) == null) {
          AvatarGatewayGrpc.getDriveMethod = getDriveMethod =
              io.grpc.MethodDescriptor.<com.avatargateway.gateway.v1.DriveRequest, com.avatargateway.gateway.v1.DriveResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.BIDI_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Drive"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.DriveRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  com.avatargateway.gateway.v1.DriveResponse.getDefaultInstance()))
              .setSchemaDescriptor(new AvatarGatewayMethodDescriptorSupplier("Drive"))
              .build();
        }
      }
    }
    return getDriveMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static AvatarGatewayStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayStub>() {
        @java.lang.Override
        public AvatarGatewayStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new AvatarGatewayStub(channel, callOptions);
        }
      };
    return AvatarGatewayStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static AvatarGatewayBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayBlockingV2Stub>() {
        @java.lang.Override
        public AvatarGatewayBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new AvatarGatewayBlockingV2Stub(channel, callOptions);
        }
      };
    return AvatarGatewayBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static AvatarGatewayBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayBlockingStub>() {
        @java.lang.Override
        public AvatarGatewayBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new AvatarGatewayBlockingStub(channel, callOptions);
        }
      };
    return AvatarGatewayBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static AvatarGatewayFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<AvatarGatewayFutureStub>() {
        @java.lang.Override
        public AvatarGatewayFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new AvatarGatewayFutureStub(channel, callOptions);
        }
      };
    return AvatarGatewayFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * AvatarGateway drives real-time talking avatars from several cloud vendors
   * through one API.
   * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
   * stream on it and sends PCM audio or text; the vendor renders the avatar and
   * pushes the video to end users over its own RTC (see `Session.playback`).
   * Authentication. When the server is configured with API keys, every call but
   * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
   * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
   * to the tenant whose key created it: to any other tenant it answers exactly as
   * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
   * tenant. A key with the admin role sees every tenant's sessions.
   * Errors. Every failed call ends with a canonical status code and exactly one
   * `google.rpc.ErrorInfo` in the status details, with domain
   * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
   * and always present for a reason once emitted):
   * | reason                    | code                | metadata                              |
   * |---------------------------|---------------------|---------------------------------------|
   * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
   * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
   * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
   * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
   * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
   * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
   * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
   * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
   * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
   * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
   * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
   * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
   * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
   * | DRIVE_PREEMPTED           | ABORTED             | session                               |
   * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
   * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
   * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
   * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
   * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
   * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
   * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
   * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
   * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
   * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
   * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
   * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
   * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
   * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
   * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
   * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
   * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
   * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
   * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
   * | INTERNAL                  | INTERNAL            | exception                             |
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * Creates a vendor session and returns once it is ready to drive.
     * Idempotent on `request_id`: a retry with the same id returns the same
     * session (and never creates a second vendor session). The call waits for the
     * vendor to report the session ready, bounded by the call deadline and by the
     * server's own limit; if the vendor session fails to start, the returned
     * session is in state `SESSION_STATE_FAILED` with `failure` set and the
     * vendor session has been closed. A call that fails before the vendor made a
     * session (e.g. `AVATAR_NOT_FOUND`) leaves no session behind. When the server
     * (`scope` "replica") or the whole deployment (`scope` "cluster") already
     * holds its most live sessions, the call fails with RESOURCE_EXHAUSTED
     * `SESSION_LIMIT_REACHED` and a `google.rpc.RetryInfo`. A tenant at its own
     * quota (live sessions, or CreateSession calls per minute) gets
     * RESOURCE_EXHAUSTED `TENANT_QUOTA_EXCEEDED` with a `google.rpc.QuotaFailure`
     * and a `google.rpc.RetryInfo`. A server past its capacity (see `Drive`) refuses
     * a new call at once with RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` and a
     * `google.rpc.RetryInfo`, before any vendor work; a retry with the `request_id`
     * of a call that already made its session still returns that session.
     * </pre>
     */
    default void createSession(com.avatargateway.gateway.v1.CreateSessionRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCreateSessionMethod(), responseObserver);
    }

    /**
     * <pre>
     * Returns one session by name (`sessions/{session_id}`).
     * </pre>
     */
    default void getSession(com.avatargateway.gateway.v1.GetSessionRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetSessionMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists sessions, newest first, optionally filtered by vendor, state and labels.
     * Closed and failed sessions are listed for a retention period (1 h by
     * default). A page token marks a position in creation order: paging returns
     * each older session once, even while sessions are created or replicas come
     * and go (a session forgotten meanwhile is skipped).
     * </pre>
     */
    default void listSessions(com.avatargateway.gateway.v1.ListSessionsRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListSessionsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListSessionsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Closes the vendor session and returns the final session. Idempotent: closing
     * a closed session returns it unchanged. An open `Drive` stream on the
     * session ends with FAILED_PRECONDITION `SESSION_CLOSED`.
     * </pre>
     */
    default void closeSession(com.avatargateway.gateway.v1.CloseSessionRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getCloseSessionMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists the avatars a vendor offers, where the vendor can list them.
     * </pre>
     */
    default void listAvatars(com.avatargateway.gateway.v1.ListAvatarsRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListAvatarsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListAvatarsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Lists the configured vendors and what each can do.
     * </pre>
     */
    default void listVendors(com.avatargateway.gateway.v1.ListVendorsRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListVendorsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListVendorsMethod(), responseObserver);
    }

    /**
     * <pre>
     * Drives a session with audio or text, and streams back what the avatar does.
     * Protocol:
     * 1. The first request MUST be `config` (the session name and the input audio
     *    format). Anything else first ends the call with INVALID_ARGUMENT
     *    `CONFIG_NOT_FIRST`; a later `config` with INVALID_ARGUMENT
     *    `CONFIG_ALREADY_SENT`. The server answers with `started`.
     * 2. Then any mix of `audio`, `text`, `end_turn` and `interrupt`. A turn is one
     *    utterance: it begins with the first `audio` or `text` after the start of
     *    the stream, an `end_turn` or an `interrupt`, and it ends with `end_turn`
     *    (flush and tell the vendor the utterance is complete) or `interrupt`
     *    (drop what is queued and stop the avatar now). Turn ids are assigned by
     *    the server in order, "1", "2", ... per session (unique within the
     *    session, whichever server replica drives it), and appear on every event
     *    of that turn.
     * 3. Half-closing the request stream ends input: the server finishes the
     *    current turn as if `end_turn` had been sent, waits (bounded) until the
     *    vendor reports it spoken, then ends the call with OK.
     * 4. The server sends `speech_started` / `speech_ended` from vendor events
     *    (never guessed from what was sent), `transcript`, `interrupted` (also
     *    synthesised after a bounded wait if the vendor never acknowledges),
     *    `warning`, `turn_failed` and `go_away` (the server is draining: finish
     *    and reconnect; the session stays open).
     * 5. Fatal problems end the call with a status and one ErrorInfo (see the
     *    service comment). Audio the server accepted before a fatal error has
     *    already been handed to the vendor.
     * Only one Drive stream may be open per session, across all server
     * replicas: a second fails with FAILED_PRECONDITION `DRIVE_ALREADY_ACTIVE`
     * (`ownerReplica` names the replica holding the open stream), unless its
     * config sets `preempt`, in which case the older stream ends with ABORTED
     * `DRIVE_PREEMPTED` (on another replica the new stream waits for that, at
     * most twice the replica lease TTL). A stream whose replica lost the session
     * to another replica (it was unreachable longer than the lease TTL) ends
     * with ABORTED `DRIVE_TAKEN_OVER` before sending anything more to the
     * vendor; reconnect to drive the session again.
     * Flow control: the server reads audio no faster than the vendor accepts it
     * plus a bounded buffer (a few seconds), so a client sending faster than real
     * time is slowed by gRPC flow control rather than buffered without bound.
     * Capacity: a server past a capacity bound (open Drive streams, event-loop
     * lag, input backlog) refuses a new Drive call right after its `config` with
     * RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` (`signal` names the bound, `value`
     * its value, `bound` the limit; counts or milliseconds) and a
     * `google.rpc.RetryInfo`, and its health turns NOT_SERVING until it recovers.
     * Streams already open go on undisturbed, and a `preempt` stream replacing
     * the session's stream open on the same server is admitted. A late end of speech caused by the
     * server's own load is reported as a `warning` `SPEECH_END_TIMEOUT` with
     * metadata `cause` "gateway" (else "vendor").
     * </pre>
     */
    default io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.DriveRequest> drive(
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.DriveResponse> responseObserver) {
      return io.grpc.stub.ServerCalls.asyncUnimplementedStreamingCall(getDriveMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service AvatarGateway.
   * <pre>
   * AvatarGateway drives real-time talking avatars from several cloud vendors
   * through one API.
   * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
   * stream on it and sends PCM audio or text; the vendor renders the avatar and
   * pushes the video to end users over its own RTC (see `Session.playback`).
   * Authentication. When the server is configured with API keys, every call but
   * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
   * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
   * to the tenant whose key created it: to any other tenant it answers exactly as
   * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
   * tenant. A key with the admin role sees every tenant's sessions.
   * Errors. Every failed call ends with a canonical status code and exactly one
   * `google.rpc.ErrorInfo` in the status details, with domain
   * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
   * and always present for a reason once emitted):
   * | reason                    | code                | metadata                              |
   * |---------------------------|---------------------|---------------------------------------|
   * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
   * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
   * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
   * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
   * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
   * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
   * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
   * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
   * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
   * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
   * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
   * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
   * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
   * | DRIVE_PREEMPTED           | ABORTED             | session                               |
   * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
   * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
   * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
   * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
   * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
   * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
   * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
   * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
   * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
   * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
   * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
   * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
   * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
   * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
   * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
   * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
   * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
   * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
   * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
   * | INTERNAL                  | INTERNAL            | exception                             |
   * </pre>
   */
  public static abstract class AvatarGatewayImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return AvatarGatewayGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service AvatarGateway.
   * <pre>
   * AvatarGateway drives real-time talking avatars from several cloud vendors
   * through one API.
   * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
   * stream on it and sends PCM audio or text; the vendor renders the avatar and
   * pushes the video to end users over its own RTC (see `Session.playback`).
   * Authentication. When the server is configured with API keys, every call but
   * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
   * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
   * to the tenant whose key created it: to any other tenant it answers exactly as
   * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
   * tenant. A key with the admin role sees every tenant's sessions.
   * Errors. Every failed call ends with a canonical status code and exactly one
   * `google.rpc.ErrorInfo` in the status details, with domain
   * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
   * and always present for a reason once emitted):
   * | reason                    | code                | metadata                              |
   * |---------------------------|---------------------|---------------------------------------|
   * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
   * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
   * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
   * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
   * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
   * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
   * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
   * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
   * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
   * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
   * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
   * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
   * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
   * | DRIVE_PREEMPTED           | ABORTED             | session                               |
   * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
   * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
   * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
   * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
   * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
   * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
   * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
   * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
   * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
   * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
   * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
   * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
   * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
   * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
   * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
   * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
   * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
   * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
   * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
   * | INTERNAL                  | INTERNAL            | exception                             |
   * </pre>
   */
  public static final class AvatarGatewayStub
      extends io.grpc.stub.AbstractAsyncStub<AvatarGatewayStub> {
    private AvatarGatewayStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected AvatarGatewayStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new AvatarGatewayStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a vendor session and returns once it is ready to drive.
     * Idempotent on `request_id`: a retry with the same id returns the same
     * session (and never creates a second vendor session). The call waits for the
     * vendor to report the session ready, bounded by the call deadline and by the
     * server's own limit; if the vendor session fails to start, the returned
     * session is in state `SESSION_STATE_FAILED` with `failure` set and the
     * vendor session has been closed. A call that fails before the vendor made a
     * session (e.g. `AVATAR_NOT_FOUND`) leaves no session behind. When the server
     * (`scope` "replica") or the whole deployment (`scope` "cluster") already
     * holds its most live sessions, the call fails with RESOURCE_EXHAUSTED
     * `SESSION_LIMIT_REACHED` and a `google.rpc.RetryInfo`. A tenant at its own
     * quota (live sessions, or CreateSession calls per minute) gets
     * RESOURCE_EXHAUSTED `TENANT_QUOTA_EXCEEDED` with a `google.rpc.QuotaFailure`
     * and a `google.rpc.RetryInfo`. A server past its capacity (see `Drive`) refuses
     * a new call at once with RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` and a
     * `google.rpc.RetryInfo`, before any vendor work; a retry with the `request_id`
     * of a call that already made its session still returns that session.
     * </pre>
     */
    public void createSession(com.avatargateway.gateway.v1.CreateSessionRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCreateSessionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Returns one session by name (`sessions/{session_id}`).
     * </pre>
     */
    public void getSession(com.avatargateway.gateway.v1.GetSessionRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetSessionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists sessions, newest first, optionally filtered by vendor, state and labels.
     * Closed and failed sessions are listed for a retention period (1 h by
     * default). A page token marks a position in creation order: paging returns
     * each older session once, even while sessions are created or replicas come
     * and go (a session forgotten meanwhile is skipped).
     * </pre>
     */
    public void listSessions(com.avatargateway.gateway.v1.ListSessionsRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListSessionsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListSessionsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Closes the vendor session and returns the final session. Idempotent: closing
     * a closed session returns it unchanged. An open `Drive` stream on the
     * session ends with FAILED_PRECONDITION `SESSION_CLOSED`.
     * </pre>
     */
    public void closeSession(com.avatargateway.gateway.v1.CloseSessionRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getCloseSessionMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists the avatars a vendor offers, where the vendor can list them.
     * </pre>
     */
    public void listAvatars(com.avatargateway.gateway.v1.ListAvatarsRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListAvatarsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListAvatarsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Lists the configured vendors and what each can do.
     * </pre>
     */
    public void listVendors(com.avatargateway.gateway.v1.ListVendorsRequest request,
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListVendorsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListVendorsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * Drives a session with audio or text, and streams back what the avatar does.
     * Protocol:
     * 1. The first request MUST be `config` (the session name and the input audio
     *    format). Anything else first ends the call with INVALID_ARGUMENT
     *    `CONFIG_NOT_FIRST`; a later `config` with INVALID_ARGUMENT
     *    `CONFIG_ALREADY_SENT`. The server answers with `started`.
     * 2. Then any mix of `audio`, `text`, `end_turn` and `interrupt`. A turn is one
     *    utterance: it begins with the first `audio` or `text` after the start of
     *    the stream, an `end_turn` or an `interrupt`, and it ends with `end_turn`
     *    (flush and tell the vendor the utterance is complete) or `interrupt`
     *    (drop what is queued and stop the avatar now). Turn ids are assigned by
     *    the server in order, "1", "2", ... per session (unique within the
     *    session, whichever server replica drives it), and appear on every event
     *    of that turn.
     * 3. Half-closing the request stream ends input: the server finishes the
     *    current turn as if `end_turn` had been sent, waits (bounded) until the
     *    vendor reports it spoken, then ends the call with OK.
     * 4. The server sends `speech_started` / `speech_ended` from vendor events
     *    (never guessed from what was sent), `transcript`, `interrupted` (also
     *    synthesised after a bounded wait if the vendor never acknowledges),
     *    `warning`, `turn_failed` and `go_away` (the server is draining: finish
     *    and reconnect; the session stays open).
     * 5. Fatal problems end the call with a status and one ErrorInfo (see the
     *    service comment). Audio the server accepted before a fatal error has
     *    already been handed to the vendor.
     * Only one Drive stream may be open per session, across all server
     * replicas: a second fails with FAILED_PRECONDITION `DRIVE_ALREADY_ACTIVE`
     * (`ownerReplica` names the replica holding the open stream), unless its
     * config sets `preempt`, in which case the older stream ends with ABORTED
     * `DRIVE_PREEMPTED` (on another replica the new stream waits for that, at
     * most twice the replica lease TTL). A stream whose replica lost the session
     * to another replica (it was unreachable longer than the lease TTL) ends
     * with ABORTED `DRIVE_TAKEN_OVER` before sending anything more to the
     * vendor; reconnect to drive the session again.
     * Flow control: the server reads audio no faster than the vendor accepts it
     * plus a bounded buffer (a few seconds), so a client sending faster than real
     * time is slowed by gRPC flow control rather than buffered without bound.
     * Capacity: a server past a capacity bound (open Drive streams, event-loop
     * lag, input backlog) refuses a new Drive call right after its `config` with
     * RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` (`signal` names the bound, `value`
     * its value, `bound` the limit; counts or milliseconds) and a
     * `google.rpc.RetryInfo`, and its health turns NOT_SERVING until it recovers.
     * Streams already open go on undisturbed, and a `preempt` stream replacing
     * the session's stream open on the same server is admitted. A late end of speech caused by the
     * server's own load is reported as a `warning` `SPEECH_END_TIMEOUT` with
     * metadata `cause` "gateway" (else "vendor").
     * </pre>
     */
    public io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.DriveRequest> drive(
        io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.DriveResponse> responseObserver) {
      return io.grpc.stub.ClientCalls.asyncBidiStreamingCall(
          getChannel().newCall(getDriveMethod(), getCallOptions()), responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service AvatarGateway.
   * <pre>
   * AvatarGateway drives real-time talking avatars from several cloud vendors
   * through one API.
   * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
   * stream on it and sends PCM audio or text; the vendor renders the avatar and
   * pushes the video to end users over its own RTC (see `Session.playback`).
   * Authentication. When the server is configured with API keys, every call but
   * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
   * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
   * to the tenant whose key created it: to any other tenant it answers exactly as
   * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
   * tenant. A key with the admin role sees every tenant's sessions.
   * Errors. Every failed call ends with a canonical status code and exactly one
   * `google.rpc.ErrorInfo` in the status details, with domain
   * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
   * and always present for a reason once emitted):
   * | reason                    | code                | metadata                              |
   * |---------------------------|---------------------|---------------------------------------|
   * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
   * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
   * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
   * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
   * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
   * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
   * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
   * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
   * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
   * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
   * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
   * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
   * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
   * | DRIVE_PREEMPTED           | ABORTED             | session                               |
   * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
   * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
   * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
   * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
   * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
   * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
   * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
   * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
   * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
   * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
   * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
   * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
   * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
   * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
   * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
   * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
   * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
   * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
   * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
   * | INTERNAL                  | INTERNAL            | exception                             |
   * </pre>
   */
  public static final class AvatarGatewayBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<AvatarGatewayBlockingV2Stub> {
    private AvatarGatewayBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected AvatarGatewayBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new AvatarGatewayBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a vendor session and returns once it is ready to drive.
     * Idempotent on `request_id`: a retry with the same id returns the same
     * session (and never creates a second vendor session). The call waits for the
     * vendor to report the session ready, bounded by the call deadline and by the
     * server's own limit; if the vendor session fails to start, the returned
     * session is in state `SESSION_STATE_FAILED` with `failure` set and the
     * vendor session has been closed. A call that fails before the vendor made a
     * session (e.g. `AVATAR_NOT_FOUND`) leaves no session behind. When the server
     * (`scope` "replica") or the whole deployment (`scope` "cluster") already
     * holds its most live sessions, the call fails with RESOURCE_EXHAUSTED
     * `SESSION_LIMIT_REACHED` and a `google.rpc.RetryInfo`. A tenant at its own
     * quota (live sessions, or CreateSession calls per minute) gets
     * RESOURCE_EXHAUSTED `TENANT_QUOTA_EXCEEDED` with a `google.rpc.QuotaFailure`
     * and a `google.rpc.RetryInfo`. A server past its capacity (see `Drive`) refuses
     * a new call at once with RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` and a
     * `google.rpc.RetryInfo`, before any vendor work; a retry with the `request_id`
     * of a call that already made its session still returns that session.
     * </pre>
     */
    public com.avatargateway.gateway.v1.Session createSession(com.avatargateway.gateway.v1.CreateSessionRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getCreateSessionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Returns one session by name (`sessions/{session_id}`).
     * </pre>
     */
    public com.avatargateway.gateway.v1.Session getSession(com.avatargateway.gateway.v1.GetSessionRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetSessionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists sessions, newest first, optionally filtered by vendor, state and labels.
     * Closed and failed sessions are listed for a retention period (1 h by
     * default). A page token marks a position in creation order: paging returns
     * each older session once, even while sessions are created or replicas come
     * and go (a session forgotten meanwhile is skipped).
     * </pre>
     */
    public com.avatargateway.gateway.v1.ListSessionsResponse listSessions(com.avatargateway.gateway.v1.ListSessionsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListSessionsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Closes the vendor session and returns the final session. Idempotent: closing
     * a closed session returns it unchanged. An open `Drive` stream on the
     * session ends with FAILED_PRECONDITION `SESSION_CLOSED`.
     * </pre>
     */
    public com.avatargateway.gateway.v1.Session closeSession(com.avatargateway.gateway.v1.CloseSessionRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getCloseSessionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the avatars a vendor offers, where the vendor can list them.
     * </pre>
     */
    public com.avatargateway.gateway.v1.ListAvatarsResponse listAvatars(com.avatargateway.gateway.v1.ListAvatarsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListAvatarsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the configured vendors and what each can do.
     * </pre>
     */
    public com.avatargateway.gateway.v1.ListVendorsResponse listVendors(com.avatargateway.gateway.v1.ListVendorsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListVendorsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Drives a session with audio or text, and streams back what the avatar does.
     * Protocol:
     * 1. The first request MUST be `config` (the session name and the input audio
     *    format). Anything else first ends the call with INVALID_ARGUMENT
     *    `CONFIG_NOT_FIRST`; a later `config` with INVALID_ARGUMENT
     *    `CONFIG_ALREADY_SENT`. The server answers with `started`.
     * 2. Then any mix of `audio`, `text`, `end_turn` and `interrupt`. A turn is one
     *    utterance: it begins with the first `audio` or `text` after the start of
     *    the stream, an `end_turn` or an `interrupt`, and it ends with `end_turn`
     *    (flush and tell the vendor the utterance is complete) or `interrupt`
     *    (drop what is queued and stop the avatar now). Turn ids are assigned by
     *    the server in order, "1", "2", ... per session (unique within the
     *    session, whichever server replica drives it), and appear on every event
     *    of that turn.
     * 3. Half-closing the request stream ends input: the server finishes the
     *    current turn as if `end_turn` had been sent, waits (bounded) until the
     *    vendor reports it spoken, then ends the call with OK.
     * 4. The server sends `speech_started` / `speech_ended` from vendor events
     *    (never guessed from what was sent), `transcript`, `interrupted` (also
     *    synthesised after a bounded wait if the vendor never acknowledges),
     *    `warning`, `turn_failed` and `go_away` (the server is draining: finish
     *    and reconnect; the session stays open).
     * 5. Fatal problems end the call with a status and one ErrorInfo (see the
     *    service comment). Audio the server accepted before a fatal error has
     *    already been handed to the vendor.
     * Only one Drive stream may be open per session, across all server
     * replicas: a second fails with FAILED_PRECONDITION `DRIVE_ALREADY_ACTIVE`
     * (`ownerReplica` names the replica holding the open stream), unless its
     * config sets `preempt`, in which case the older stream ends with ABORTED
     * `DRIVE_PREEMPTED` (on another replica the new stream waits for that, at
     * most twice the replica lease TTL). A stream whose replica lost the session
     * to another replica (it was unreachable longer than the lease TTL) ends
     * with ABORTED `DRIVE_TAKEN_OVER` before sending anything more to the
     * vendor; reconnect to drive the session again.
     * Flow control: the server reads audio no faster than the vendor accepts it
     * plus a bounded buffer (a few seconds), so a client sending faster than real
     * time is slowed by gRPC flow control rather than buffered without bound.
     * Capacity: a server past a capacity bound (open Drive streams, event-loop
     * lag, input backlog) refuses a new Drive call right after its `config` with
     * RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` (`signal` names the bound, `value`
     * its value, `bound` the limit; counts or milliseconds) and a
     * `google.rpc.RetryInfo`, and its health turns NOT_SERVING until it recovers.
     * Streams already open go on undisturbed, and a `preempt` stream replacing
     * the session's stream open on the same server is admitted. A late end of speech caused by the
     * server's own load is reported as a `warning` `SPEECH_END_TIMEOUT` with
     * metadata `cause` "gateway" (else "vendor").
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<com.avatargateway.gateway.v1.DriveRequest, com.avatargateway.gateway.v1.DriveResponse>
        drive() {
      return io.grpc.stub.ClientCalls.blockingBidiStreamingCall(
          getChannel(), getDriveMethod(), getCallOptions());
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service AvatarGateway.
   * <pre>
   * AvatarGateway drives real-time talking avatars from several cloud vendors
   * through one API.
   * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
   * stream on it and sends PCM audio or text; the vendor renders the avatar and
   * pushes the video to end users over its own RTC (see `Session.playback`).
   * Authentication. When the server is configured with API keys, every call but
   * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
   * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
   * to the tenant whose key created it: to any other tenant it answers exactly as
   * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
   * tenant. A key with the admin role sees every tenant's sessions.
   * Errors. Every failed call ends with a canonical status code and exactly one
   * `google.rpc.ErrorInfo` in the status details, with domain
   * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
   * and always present for a reason once emitted):
   * | reason                    | code                | metadata                              |
   * |---------------------------|---------------------|---------------------------------------|
   * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
   * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
   * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
   * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
   * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
   * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
   * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
   * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
   * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
   * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
   * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
   * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
   * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
   * | DRIVE_PREEMPTED           | ABORTED             | session                               |
   * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
   * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
   * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
   * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
   * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
   * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
   * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
   * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
   * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
   * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
   * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
   * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
   * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
   * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
   * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
   * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
   * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
   * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
   * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
   * | INTERNAL                  | INTERNAL            | exception                             |
   * </pre>
   */
  public static final class AvatarGatewayBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<AvatarGatewayBlockingStub> {
    private AvatarGatewayBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected AvatarGatewayBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new AvatarGatewayBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a vendor session and returns once it is ready to drive.
     * Idempotent on `request_id`: a retry with the same id returns the same
     * session (and never creates a second vendor session). The call waits for the
     * vendor to report the session ready, bounded by the call deadline and by the
     * server's own limit; if the vendor session fails to start, the returned
     * session is in state `SESSION_STATE_FAILED` with `failure` set and the
     * vendor session has been closed. A call that fails before the vendor made a
     * session (e.g. `AVATAR_NOT_FOUND`) leaves no session behind. When the server
     * (`scope` "replica") or the whole deployment (`scope` "cluster") already
     * holds its most live sessions, the call fails with RESOURCE_EXHAUSTED
     * `SESSION_LIMIT_REACHED` and a `google.rpc.RetryInfo`. A tenant at its own
     * quota (live sessions, or CreateSession calls per minute) gets
     * RESOURCE_EXHAUSTED `TENANT_QUOTA_EXCEEDED` with a `google.rpc.QuotaFailure`
     * and a `google.rpc.RetryInfo`. A server past its capacity (see `Drive`) refuses
     * a new call at once with RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` and a
     * `google.rpc.RetryInfo`, before any vendor work; a retry with the `request_id`
     * of a call that already made its session still returns that session.
     * </pre>
     */
    public com.avatargateway.gateway.v1.Session createSession(com.avatargateway.gateway.v1.CreateSessionRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCreateSessionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Returns one session by name (`sessions/{session_id}`).
     * </pre>
     */
    public com.avatargateway.gateway.v1.Session getSession(com.avatargateway.gateway.v1.GetSessionRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetSessionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists sessions, newest first, optionally filtered by vendor, state and labels.
     * Closed and failed sessions are listed for a retention period (1 h by
     * default). A page token marks a position in creation order: paging returns
     * each older session once, even while sessions are created or replicas come
     * and go (a session forgotten meanwhile is skipped).
     * </pre>
     */
    public com.avatargateway.gateway.v1.ListSessionsResponse listSessions(com.avatargateway.gateway.v1.ListSessionsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListSessionsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Closes the vendor session and returns the final session. Idempotent: closing
     * a closed session returns it unchanged. An open `Drive` stream on the
     * session ends with FAILED_PRECONDITION `SESSION_CLOSED`.
     * </pre>
     */
    public com.avatargateway.gateway.v1.Session closeSession(com.avatargateway.gateway.v1.CloseSessionRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getCloseSessionMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the avatars a vendor offers, where the vendor can list them.
     * </pre>
     */
    public com.avatargateway.gateway.v1.ListAvatarsResponse listAvatars(com.avatargateway.gateway.v1.ListAvatarsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListAvatarsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * Lists the configured vendors and what each can do.
     * </pre>
     */
    public com.avatargateway.gateway.v1.ListVendorsResponse listVendors(com.avatargateway.gateway.v1.ListVendorsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListVendorsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service AvatarGateway.
   * <pre>
   * AvatarGateway drives real-time talking avatars from several cloud vendors
   * through one API.
   * A caller creates a session on a vendor (`CreateSession`), opens a `Drive`
   * stream on it and sends PCM audio or text; the vendor renders the avatar and
   * pushes the video to end users over its own RTC (see `Session.playback`).
   * Authentication. When the server is configured with API keys, every call but
   * the health service carries `authorization: Bearer &lt;api key&gt;` metadata; a
   * missing, unknown or revoked key fails with UNAUTHENTICATED. A session belongs
   * to the tenant whose key created it: to any other tenant it answers exactly as
   * a session that does not exist (NOT_FOUND), and `request_id` is scoped per
   * tenant. A key with the admin role sees every tenant's sessions.
   * Errors. Every failed call ends with a canonical status code and exactly one
   * `google.rpc.ErrorInfo` in the status details, with domain
   * `avatargateway.dev` and one of these reasons (metadata keys are lowerCamelCase
   * and always present for a reason once emitted):
   * | reason                    | code                | metadata                              |
   * |---------------------------|---------------------|---------------------------------------|
   * | CONFIG_NOT_FIRST          | INVALID_ARGUMENT    | received                              |
   * | CONFIG_ALREADY_SENT       | INVALID_ARGUMENT    | session                               |
   * | INVALID_SESSION_NAME      | INVALID_ARGUMENT    | name                                  |
   * | UNSUPPORTED_AUDIO_FORMAT  | INVALID_ARGUMENT    | audioEncoding, sampleRateHertz, audioChannelCount |
   * | CHUNK_TOO_LARGE           | INVALID_ARGUMENT    | chunkBytes, maxChunkBytes             |
   * | TEXT_TOO_LONG             | INVALID_ARGUMENT    | textLength, maxTextLength             |
   * | INVALID_ARGUMENT          | INVALID_ARGUMENT    | field                                 |
   * | UNKNOWN_VENDOR            | INVALID_ARGUMENT    | vendor                                |
   * | AVATAR_NOT_FOUND          | NOT_FOUND           | vendor, avatarId                      |
   * | SESSION_NOT_FOUND         | NOT_FOUND           | session                               |
   * | SESSION_CLOSED            | FAILED_PRECONDITION | session, closeReason                  |
   * | SESSION_NOT_READY         | FAILED_PRECONDITION | session, state                        |
   * | DRIVE_ALREADY_ACTIVE      | FAILED_PRECONDITION | session, ownerReplica                 |
   * | DRIVE_PREEMPTED           | ABORTED             | session                               |
   * | DRIVE_TAKEN_OVER          | ABORTED             | session, ownerReplica                 |
   * | AUDIO_NOT_SUPPORTED       | FAILED_PRECONDITION | vendor, session                       |
   * | TEXT_NOT_SUPPORTED        | FAILED_PRECONDITION | vendor, session                       |
   * | REQUEST_ID_REUSED         | INVALID_ARGUMENT    | requestId                             |
   * | VENDOR_AUTH_FAILED        | INTERNAL            | vendor, vendorCode, setting           |
   * | VENDOR_RATE_LIMITED       | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | vendor, vendorCode                    |
   * | VENDOR_UNAVAILABLE        | UNAVAILABLE         | vendor                                |
   * | VENDOR_TIMEOUT            | UNAVAILABLE         | vendor                                |
   * | VENDOR_SESSION_LOST       | UNAVAILABLE         | vendor, session                       |
   * | VENDOR_SESSION_NOT_FOUND  | NOT_FOUND           | vendor, session                       |
   * | VENDOR_SESSION_FAILED     | UNAVAILABLE         | vendor                                |
   * | VENDOR_REJECTED           | FAILED_PRECONDITION | vendor, vendorCode                    |
   * | VENDOR_INVALID_ARGUMENT   | INVALID_ARGUMENT    | vendor, vendorCode                    |
   * | VENDOR_INTERNAL           | INTERNAL            | vendor, vendorCode                    |
   * | SERVER_DRAINING           | UNAVAILABLE         | (none)                                |
   * | REGISTRY_UNAVAILABLE      | UNAVAILABLE         | (none)                                |
   * | UNAUTHENTICATED           | UNAUTHENTICATED     | (none)                                |
   * | TENANT_QUOTA_EXCEEDED     | RESOURCE_EXHAUSTED  | tenant, quota, limit                  |
   * | SESSION_LIMIT_REACHED     | RESOURCE_EXHAUSTED  | scope, limit                          |
   * | GATEWAY_OVERLOADED        | RESOURCE_EXHAUSTED  | signal, value, bound                  |
   * | INTERNAL                  | INTERNAL            | exception                             |
   * </pre>
   */
  public static final class AvatarGatewayFutureStub
      extends io.grpc.stub.AbstractFutureStub<AvatarGatewayFutureStub> {
    private AvatarGatewayFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected AvatarGatewayFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new AvatarGatewayFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Creates a vendor session and returns once it is ready to drive.
     * Idempotent on `request_id`: a retry with the same id returns the same
     * session (and never creates a second vendor session). The call waits for the
     * vendor to report the session ready, bounded by the call deadline and by the
     * server's own limit; if the vendor session fails to start, the returned
     * session is in state `SESSION_STATE_FAILED` with `failure` set and the
     * vendor session has been closed. A call that fails before the vendor made a
     * session (e.g. `AVATAR_NOT_FOUND`) leaves no session behind. When the server
     * (`scope` "replica") or the whole deployment (`scope` "cluster") already
     * holds its most live sessions, the call fails with RESOURCE_EXHAUSTED
     * `SESSION_LIMIT_REACHED` and a `google.rpc.RetryInfo`. A tenant at its own
     * quota (live sessions, or CreateSession calls per minute) gets
     * RESOURCE_EXHAUSTED `TENANT_QUOTA_EXCEEDED` with a `google.rpc.QuotaFailure`
     * and a `google.rpc.RetryInfo`. A server past its capacity (see `Drive`) refuses
     * a new call at once with RESOURCE_EXHAUSTED `GATEWAY_OVERLOADED` and a
     * `google.rpc.RetryInfo`, before any vendor work; a retry with the `request_id`
     * of a call that already made its session still returns that session.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.avatargateway.gateway.v1.Session> createSession(
        com.avatargateway.gateway.v1.CreateSessionRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCreateSessionMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Returns one session by name (`sessions/{session_id}`).
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.avatargateway.gateway.v1.Session> getSession(
        com.avatargateway.gateway.v1.GetSessionRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetSessionMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists sessions, newest first, optionally filtered by vendor, state and labels.
     * Closed and failed sessions are listed for a retention period (1 h by
     * default). A page token marks a position in creation order: paging returns
     * each older session once, even while sessions are created or replicas come
     * and go (a session forgotten meanwhile is skipped).
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.avatargateway.gateway.v1.ListSessionsResponse> listSessions(
        com.avatargateway.gateway.v1.ListSessionsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListSessionsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Closes the vendor session and returns the final session. Idempotent: closing
     * a closed session returns it unchanged. An open `Drive` stream on the
     * session ends with FAILED_PRECONDITION `SESSION_CLOSED`.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.avatargateway.gateway.v1.Session> closeSession(
        com.avatargateway.gateway.v1.CloseSessionRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getCloseSessionMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists the avatars a vendor offers, where the vendor can list them.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.avatargateway.gateway.v1.ListAvatarsResponse> listAvatars(
        com.avatargateway.gateway.v1.ListAvatarsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListAvatarsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * Lists the configured vendors and what each can do.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<com.avatargateway.gateway.v1.ListVendorsResponse> listVendors(
        com.avatargateway.gateway.v1.ListVendorsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListVendorsMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_CREATE_SESSION = 0;
  private static final int METHODID_GET_SESSION = 1;
  private static final int METHODID_LIST_SESSIONS = 2;
  private static final int METHODID_CLOSE_SESSION = 3;
  private static final int METHODID_LIST_AVATARS = 4;
  private static final int METHODID_LIST_VENDORS = 5;
  private static final int METHODID_DRIVE = 6;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_CREATE_SESSION:
          serviceImpl.createSession((com.avatargateway.gateway.v1.CreateSessionRequest) request,
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session>) responseObserver);
          break;
        case METHODID_GET_SESSION:
          serviceImpl.getSession((com.avatargateway.gateway.v1.GetSessionRequest) request,
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session>) responseObserver);
          break;
        case METHODID_LIST_SESSIONS:
          serviceImpl.listSessions((com.avatargateway.gateway.v1.ListSessionsRequest) request,
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListSessionsResponse>) responseObserver);
          break;
        case METHODID_CLOSE_SESSION:
          serviceImpl.closeSession((com.avatargateway.gateway.v1.CloseSessionRequest) request,
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.Session>) responseObserver);
          break;
        case METHODID_LIST_AVATARS:
          serviceImpl.listAvatars((com.avatargateway.gateway.v1.ListAvatarsRequest) request,
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListAvatarsResponse>) responseObserver);
          break;
        case METHODID_LIST_VENDORS:
          serviceImpl.listVendors((com.avatargateway.gateway.v1.ListVendorsRequest) request,
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.ListVendorsResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_DRIVE:
          return (io.grpc.stub.StreamObserver<Req>) serviceImpl.drive(
              (io.grpc.stub.StreamObserver<com.avatargateway.gateway.v1.DriveResponse>) responseObserver);
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getCreateSessionMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.CreateSessionRequest,
              com.avatargateway.gateway.v1.Session>(
                service, METHODID_CREATE_SESSION)))
        .addMethod(
          getGetSessionMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.GetSessionRequest,
              com.avatargateway.gateway.v1.Session>(
                service, METHODID_GET_SESSION)))
        .addMethod(
          getListSessionsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.ListSessionsRequest,
              com.avatargateway.gateway.v1.ListSessionsResponse>(
                service, METHODID_LIST_SESSIONS)))
        .addMethod(
          getCloseSessionMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.CloseSessionRequest,
              com.avatargateway.gateway.v1.Session>(
                service, METHODID_CLOSE_SESSION)))
        .addMethod(
          getListAvatarsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.ListAvatarsRequest,
              com.avatargateway.gateway.v1.ListAvatarsResponse>(
                service, METHODID_LIST_AVATARS)))
        .addMethod(
          getListVendorsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.ListVendorsRequest,
              com.avatargateway.gateway.v1.ListVendorsResponse>(
                service, METHODID_LIST_VENDORS)))
        .addMethod(
          getDriveMethod(),
          io.grpc.stub.ServerCalls.asyncBidiStreamingCall(
            new MethodHandlers<
              com.avatargateway.gateway.v1.DriveRequest,
              com.avatargateway.gateway.v1.DriveResponse>(
                service, METHODID_DRIVE)))
        .build();
  }

  private static abstract class AvatarGatewayBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    AvatarGatewayBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return com.avatargateway.gateway.v1.AvatarGatewayServiceProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("AvatarGateway");
    }
  }

  private static final class AvatarGatewayFileDescriptorSupplier
      extends AvatarGatewayBaseDescriptorSupplier {
    AvatarGatewayFileDescriptorSupplier() {}
  }

  private static final class AvatarGatewayMethodDescriptorSupplier
      extends AvatarGatewayBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    AvatarGatewayMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (AvatarGatewayGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new AvatarGatewayFileDescriptorSupplier())
              .addMethod(getCreateSessionMethod())
              .addMethod(getGetSessionMethod())
              .addMethod(getListSessionsMethod())
              .addMethod(getCloseSessionMethod())
              .addMethod(getListAvatarsMethod())
              .addMethod(getListVendorsMethod())
              .addMethod(getDriveMethod())
              .build();
        }
      }
    }
    return result;
  }
}
