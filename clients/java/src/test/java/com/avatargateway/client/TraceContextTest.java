package com.avatargateway.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsServerCredentials;
import io.opentelemetry.api.GlobalOpenTelemetry;
import io.opentelemetry.api.OpenTelemetry;
import io.opentelemetry.api.baggage.Baggage;
import io.opentelemetry.api.baggage.propagation.W3CBaggagePropagator;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.TraceFlags;
import io.opentelemetry.api.trace.TraceState;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.ContextPropagators;
import io.opentelemetry.context.propagation.TextMapPropagator;
import io.opentelemetry.sdk.trace.ReadWriteSpan;
import io.opentelemetry.sdk.trace.ReadableSpan;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.SpanProcessor;
import io.opentelemetry.sdk.trace.data.SpanData;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * {@link TraceContextInterceptor} through {@link GatewayChannelBuilder}: the OpenTelemetry SDK
 * makes the caller's spans, as in a caller's service, and a real grpc-java server on loopback
 * ({@link LoopbackGateway}) records the trace context metadata of a unary and a streaming call.
 */
class TraceContextTest {
  private static final Metadata.Key<String> TRACEPARENT = Metadata.Key.of("traceparent", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> TRACESTATE = Metadata.Key.of("tracestate", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> BAGGAGE = Metadata.Key.of("baggage", Metadata.ASCII_STRING_MARSHALLER);
  private static final ContextPropagators W3C = ContextPropagators.create(TextMapPropagator.composite(
      W3CTraceContextPropagator.getInstance(), W3CBaggagePropagator.getInstance()));

  /** The caller's spans, as the SDK ended them. */
  private final List<SpanData> ended = new CopyOnWriteArrayList<>();
  // Without a span processor, the SDK's tracers are no-ops.
  private final SdkTracerProvider tracerProvider = SdkTracerProvider.builder()
      .addSpanProcessor(new SpanProcessor() {
        @Override
        public void onStart(Context parentContext, ReadWriteSpan span) {}

        @Override
        public boolean isStartRequired() {
          return false;
        }

        @Override
        public void onEnd(ReadableSpan span) {
          ended.add(span.toSpanData());
        }

        @Override
        public boolean isEndRequired() {
          return true;
        }
      })
      .build();
  private final Tracer tracer = tracerProvider.get("trace-context-test");
  private final LoopbackGateway gateway = new LoopbackGateway();
  private final List<ManagedChannel> channels = new ArrayList<>();

  @AfterEach
  void stop() throws InterruptedException {
    for (ManagedChannel c : channels) {
      c.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    gateway.close();
    tracerProvider.close();
    GlobalOpenTelemetry.resetForTest();
  }

  private ManagedChannel channel(GatewayChannelBuilder b) throws IOException {
    ManagedChannel c = b.build();
    channels.add(c);
    return c;
  }

  /** A unary call and a Drive on {@code channel}, with {@code context} current. */
  private static void callsIn(Context context, ManagedChannel channel) throws InterruptedException {
    try (Scope ignored = context.makeCurrent()) {
      GatewayChannelBuilderTest.unaryAndStreaming(channel);
    }
  }

  /** [method, traceparent, tracestate, baggage] of each call the server saw. */
  private List<List<String>> traceHeaders() {
    List<List<String>> out = new ArrayList<>();
    for (int i = 0; i < gateway.seen.size(); i++) {
      Metadata h = gateway.headers.get(i);
      out.add(Arrays.asList(gateway.seen.get(i).method(), all(h, TRACEPARENT), all(h, TRACESTATE), all(h, BAGGAGE)));
    }
    return out;
  }

  /** The values of {@code key} joined with "|", or null when there is none. */
  private static String all(Metadata headers, Metadata.Key<String> key) {
    Iterable<String> values = headers.getAll(key);
    return values == null ? null : String.join("|", values);
  }

  /** The W3C traceparent of {@code span}, which the SDK recorded as ended. */
  private String traceparent(Span span) {
    SpanContext sc = span.getSpanContext();
    assertTrue(sc.isValid() && sc.isSampled(), sc.toString());
    assertTrue(ended.stream().anyMatch(d -> d.getSpanContext().equals(sc)), "the SDK did not record " + sc);
    return "00-" + sc.getTraceId() + "-" + sc.getSpanId() + "-" + sc.getTraceFlags().asHex();
  }

  @Test
  void theCallersTraceContextGoesWithUnaryAndStreamingCalls() throws Exception {
    GlobalOpenTelemetry.set(OpenTelemetry.propagating(W3C));
    int port = gateway.serveTls(TlsServerCredentials.ClientAuth.NONE);
    ManagedChannel channel = channel(GatewayChannelBuilder.forAddress("localhost", port)
        .trustedCaFile(LoopbackGateway.TLS.resolve("ca.pem"))
        .credential("agk_test.Key-123_abc"));
    // The caller's span continues a remote parent that set a tracestate entry, with baggage.
    SpanContext remote = SpanContext.createFromRemoteParent("4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7", TraceFlags.getSampled(), TraceState.builder().put("vendor1", "opaque-1").build());
    Context parent = Context.root().with(Span.wrap(remote))
        .with(Baggage.builder().put("tenant", "acme").build());
    Span span = tracer.spanBuilder("caller").setParent(parent).startSpan();
    callsIn(parent.with(span), channel);
    span.end();
    // A new span in the remote parent's trace, with its tracestate.
    assertEquals("4bf92f3577b34da6a3ce929d0e0e4736", span.getSpanContext().getTraceId());
    assertNotEquals(remote.getSpanId(), span.getSpanContext().getSpanId());
    assertEquals(remote.getSpanId(), ended.get(0).getParentSpanId());
    String expected = "00-4bf92f3577b34da6a3ce929d0e0e4736-" + span.getSpanContext().getSpanId() + "-01";
    assertEquals(expected, traceparent(span));
    assertEquals(List.of(
        List.of("ListVendors", expected, "vendor1=opaque-1", "tenant=acme"),
        List.of("Drive", expected, "vendor1=opaque-1", "tenant=acme")), traceHeaders());
  }

  @Test
  void theW3cTraceContextGoesEvenWithoutPropagatorsSet() throws Exception {
    // GlobalOpenTelemetry is not set: getOrNoop() has no propagators. Nor is it set by the calls.
    int port = gateway.serve(InsecureServerCredentials.create());
    ManagedChannel channel = channel(GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext());
    Span span = tracer.spanBuilder("caller").setNoParent().startSpan();
    callsIn(Context.root().with(span).with(Baggage.builder().put("tenant", "acme").build()), channel);
    span.end();
    String expected = traceparent(span);
    assertTrue(expected.matches("00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]"), expected);
    assertEquals(List.of(
        Arrays.asList("ListVendors", expected, null, null),
        Arrays.asList("Drive", expected, null, null)), traceHeaders());
    assertFalse(GlobalOpenTelemetry.isSet(), "the interceptor set the global OpenTelemetry");
  }

  @Test
  void anOpenTelemetryPassedToTheBuilderReplacesTheGlobalOne() throws Exception {
    int port = gateway.serve(InsecureServerCredentials.create());
    ManagedChannel channel = channel(GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
        .openTelemetry(OpenTelemetry.propagating(W3C)));
    Span span = tracer.spanBuilder("caller").setNoParent().startSpan();
    callsIn(Context.root().with(span).with(Baggage.builder().put("tenant", "acme").build()), channel);
    span.end();
    assertEquals(List.of(
        Arrays.asList("ListVendors", traceparent(span), null, "tenant=acme"),
        Arrays.asList("Drive", traceparent(span), null, "tenant=acme")), traceHeaders());
  }

  @Test
  void noSpanOrPropagationOffSendsNoTraceContext() throws Exception {
    GlobalOpenTelemetry.set(OpenTelemetry.propagating(W3C));
    int port = gateway.serve(InsecureServerCredentials.create());
    callsIn(Context.root(), channel(GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()));
    Span span = tracer.spanBuilder("caller").setNoParent().startSpan();
    callsIn(Context.root().with(span),
        channel(GatewayChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().propagateTraceContext(false)));
    span.end();
    traceparent(span); // a valid span, not sent
    assertEquals(4, gateway.seen.size());
    for (List<String> call : traceHeaders()) {
      assertNull(call.get(1), call.toString());
      assertNull(call.get(2), call.toString());
      assertNull(call.get(3), call.toString());
    }
  }
}
