package com.avatargateway.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall.SimpleForwardingClientCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.propagation.TextMapSetter;
import java.util.Locale;
import java.util.Objects;

/**
 * Sends the caller's OpenTelemetry trace context with every call, unary and streaming, so that the
 * gateway's spans join the caller's trace: the W3C Trace Context ({@code traceparent}, and {@code
 * tracestate} when it is not empty) of the span in {@link Context#current()} when the call is
 * made, then the fields of the application's propagators ({@code
 * OpenTelemetry.getPropagators()}), whose values win where both write the same field. Existing
 * values of these fields in the call's headers are replaced.
 *
 * <p>The W3C part is always there because the gateway reads it, and a caller's own propagators are
 * a no-op unless it configured some ({@code OpenTelemetrySdk.builder()} without {@code
 * setPropagators}); with the Java agent or the SDK's autoconfiguration they are W3C trace context
 * and baggage. Without a valid span in the current context, no {@code traceparent} is sent.
 *
 * <p>{@link GatewayChannelBuilder} adds it to every channel it builds; add it yourself to a channel
 * built otherwise, with {@code ManagedChannelBuilder.intercept(TraceContextInterceptor.create())}.
 */
public final class TraceContextInterceptor implements ClientInterceptor {
  private static final TextMapSetter<Metadata> SETTER =
      (headers, key, value) -> {
        if (headers == null || value == null) {
          return;
        }
        String name = key.toLowerCase(Locale.ROOT);
        if (name.endsWith(Metadata.BINARY_HEADER_SUFFIX)) {
          return; // text map propagators write text; a -bin header needs bytes
        }
        Metadata.Key<String> k = Metadata.Key.of(name, Metadata.ASCII_STRING_MARSHALLER);
        headers.removeAll(k);
        headers.put(k, value);
      };

  private final OpenTelemetry openTelemetry; // null: GlobalOpenTelemetry, looked up on each call

  private TraceContextInterceptor(OpenTelemetry openTelemetry) {
    this.openTelemetry = openTelemetry;
  }

  /**
   * With the propagators of {@link GlobalOpenTelemetry} (the Java agent's, or those the application
   * set), looked up on each call with {@link GlobalOpenTelemetry#getOrNoop()}, which never sets the
   * global instance itself.
   */
  public static TraceContextInterceptor create() {
    return new TraceContextInterceptor(null);
  }

  /** With the propagators of {@code openTelemetry}, for an application that passes its own. */
  public static TraceContextInterceptor create(OpenTelemetry openTelemetry) {
    return new TraceContextInterceptor(Objects.requireNonNull(openTelemetry, "openTelemetry"));
  }

  @Override
  public <Q, R> ClientCall<Q, R> interceptCall(
      MethodDescriptor<Q, R> method, CallOptions callOptions, Channel next) {
    Context context = Context.current(); // the caller's, as the call is made
    return new SimpleForwardingClientCall<>(next.newCall(method, callOptions)) {
      @Override
      public void start(Listener<R> responseListener, Metadata headers) {
        inject(context, headers);
        super.start(responseListener, headers);
      }
    };
  }

  private void inject(Context context, Metadata headers) {
    W3CTraceContextPropagator.getInstance().inject(context, headers, SETTER);
    OpenTelemetry otel = openTelemetry != null ? openTelemetry : GlobalOpenTelemetry.getOrNoop();
    otel.getPropagators().getTextMapPropagator().inject(context, headers, SETTER);
  }
}
