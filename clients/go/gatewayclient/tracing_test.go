package gatewayclient

import (
	"context"
	"regexp"
	"testing"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// A well-formed W3C traceparent: version 00, trace id, parent (span) id, flags.
var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-0[0-3]$`)

// noPropagator is what the global propagator is until an application sets one.
var noPropagator = propagation.NewCompositeTextMapPropagator()

// useGlobals sets the global tracer provider and propagator for one test, and the defaults
// (no-op) again after it. NewConn must come after: otelgrpc takes the provider then.
func useGlobals(t *testing.T, tp trace.TracerProvider, p propagation.TextMapPropagator) {
	t.Helper()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(p)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetTextMapPropagator(noPropagator)
	})
}

// useSDK sets an OpenTelemetry SDK tracer provider that records every span, with p.
func useSDK(t *testing.T, p propagation.TextMapPropagator) (*tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	useGlobals(t, tp, p)
	return rec, tp.Tracer("gatewayclient-test")
}

// unaryAndDriveIn makes unaryAndDrive's calls with ctx as their parent context.
func unaryAndDriveIn(ctx context.Context, t *testing.T, client gatewayv1.AvatarGatewayClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := unaryAndDriveCtx(ctx, t, client); err != nil {
		t.Fatal(err)
	}
}

// parseTraceparent checks that c carried one well-formed traceparent and returns its trace
// id and parent id.
func parseTraceparent(t *testing.T, c call) (trace.TraceID, trace.SpanID) {
	t.Helper()
	if len(c.traceparent) != 1 {
		t.Fatalf("%s: traceparent %q, want one", c.method, c.traceparent)
	}
	m := traceparentRE.FindStringSubmatch(c.traceparent[0])
	if m == nil {
		t.Fatalf("%s: malformed traceparent %q", c.method, c.traceparent[0])
	}
	traceID, err := trace.TraceIDFromHex(m[1])
	if err != nil {
		t.Fatal(err)
	}
	spanID, err := trace.SpanIDFromHex(m[2])
	if err != nil {
		t.Fatal(err)
	}
	return traceID, spanID
}

// clientSpan returns the client span otelgrpc started for method.
func clientSpan(t *testing.T, rec *tracetest.SpanRecorder, method string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Started() {
		if s.Name() == "avatar.gateway.v1.AvatarGateway/"+method && s.SpanKind() == trace.SpanKindClient {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d client spans for %s, want 1", len(found), method)
	}
	return found[0]
}

// A caller with the SDK and the usual W3C propagators (trace context and baggage): each call
// gets a client span, child of the caller's span, and the gateway sees that client span as
// the parent, in the caller's trace, with the caller's tracestate and baggage.
func TestTraceContextOnUnaryAndStreamingCalls(t *testing.T) {
	rec, tracer := useSDK(t, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	addr, g := startGateway(t, tlsServer)
	client := dial(t, addr, WithCAFile(tlsFile("ca.pem")), WithCredential("ak_test"))

	// The caller's span continues a remote parent that set a tracestate entry.
	state, err := trace.ParseTraceState("vendor1=opaque-1")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
		TraceState: state,
		Remote:     true,
	})
	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	ctx := baggage.ContextWithBaggage(trace.ContextWithRemoteSpanContext(context.Background(), remote), bag)
	ctx, caller := tracer.Start(ctx, "caller")
	unaryAndDriveIn(ctx, t, client)
	caller.End()

	for _, c := range wantCalls(t, g, "Bearer ak_test") {
		traceID, parentID := parseTraceparent(t, c)
		span := clientSpan(t, rec, c.method)
		if traceID != remote.TraceID() || span.SpanContext().TraceID() != remote.TraceID() {
			t.Fatalf("%s: trace %s (client span %s), want the caller's %s", c.method, traceID, span.SpanContext().TraceID(), remote.TraceID())
		}
		if parentID != span.SpanContext().SpanID() {
			t.Fatalf("%s: parent %s, want the client span %s", c.method, parentID, span.SpanContext().SpanID())
		}
		if span.Parent().SpanID() != caller.SpanContext().SpanID() {
			t.Fatalf("%s: client span's parent %s, want the caller's span %s", c.method, span.Parent().SpanID(), caller.SpanContext().SpanID())
		}
		if !c.isSampled() {
			t.Fatalf("%s: traceparent %s not sampled", c.method, c.traceparent[0])
		}
		if len(c.tracestate) != 1 || c.tracestate[0] != "vendor1=opaque-1" {
			t.Fatalf("%s: tracestate %q", c.method, c.tracestate)
		}
		if len(c.baggage) != 1 || c.baggage[0] != "tenant=acme" {
			t.Fatalf("%s: baggage %q (the global propagator's field)", c.method, c.baggage)
		}
	}
}

func (c call) isSampled() bool { return len(c.traceparent) == 1 && c.traceparent[0][53:] == "01" }

// The global propagator is a no-op until the application sets one: the W3C trace context
// goes all the same (the gateway reads it), but nothing of what the application did not ask
// for, such as baggage.
func TestTraceContextWithoutAGlobalPropagator(t *testing.T) {
	rec, tracer := useSDK(t, noPropagator)
	addr, g := startGateway(t, plaintextServer)
	client := dial(t, addr, WithInsecurePlaintext())
	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	ctx, caller := tracer.Start(baggage.ContextWithBaggage(context.Background(), bag), "caller")
	unaryAndDriveIn(ctx, t, client)
	caller.End()
	for _, c := range wantCalls(t, g, "") {
		traceID, parentID := parseTraceparent(t, c)
		span := clientSpan(t, rec, c.method)
		if traceID != caller.SpanContext().TraceID() || parentID != span.SpanContext().SpanID() {
			t.Fatalf("%s: traceparent %s, want trace %s, parent %s", c.method, c.traceparent[0], caller.SpanContext().TraceID(), span.SpanContext().SpanID())
		}
		if len(c.tracestate) != 0 || len(c.baggage) != 0 {
			t.Fatalf("%s: tracestate %q, baggage %q, want neither", c.method, c.tracestate, c.baggage)
		}
	}
}

// Without a span in the context: with no tracer provider set (no OpenTelemetry), no trace
// context at all; with the SDK, each call starts a new trace at its client span.
func TestTraceContextWithoutACallerSpan(t *testing.T) {
	t.Run("no OpenTelemetry", func(t *testing.T) {
		useGlobals(t, tracenoop.NewTracerProvider(), noPropagator)
		addr, g := startGateway(t, plaintextServer)
		unaryAndDriveIn(context.Background(), t, dial(t, addr, WithInsecurePlaintext()))
		for _, c := range wantCalls(t, g, "") {
			if len(c.traceparent)+len(c.tracestate)+len(c.baggage) != 0 {
				t.Fatalf("%s: traceparent %q, tracestate %q, baggage %q, want none", c.method, c.traceparent, c.tracestate, c.baggage)
			}
		}
	})
	t.Run("SDK, new trace", func(t *testing.T) {
		rec, _ := useSDK(t, propagation.TraceContext{})
		addr, g := startGateway(t, plaintextServer)
		unaryAndDriveIn(context.Background(), t, dial(t, addr, WithInsecurePlaintext()))
		calls := wantCalls(t, g, "")
		traces := map[trace.TraceID]bool{}
		for _, c := range calls {
			traceID, parentID := parseTraceparent(t, c)
			span := clientSpan(t, rec, c.method)
			if span.Parent().IsValid() || span.SpanContext().TraceID() != traceID || span.SpanContext().SpanID() != parentID {
				t.Fatalf("%s: traceparent %s, want the root client span %s", c.method, c.traceparent[0], span.SpanContext().SpanID())
			}
			traces[traceID] = true
		}
		if len(traces) != 2 {
			t.Fatalf("the two calls share a trace: %v", traces)
		}
	})
}

func TestWithoutOpenTelemetry(t *testing.T) {
	rec, tracer := useSDK(t, propagation.TraceContext{})
	addr, g := startGateway(t, plaintextServer)
	client := dial(t, addr, WithInsecurePlaintext(), WithoutOpenTelemetry())
	ctx, caller := tracer.Start(context.Background(), "caller")
	unaryAndDriveIn(ctx, t, client)
	caller.End()
	for _, c := range wantCalls(t, g, "") {
		if len(c.traceparent) != 0 || len(c.tracestate) != 0 {
			t.Fatalf("%s: traceparent %q, tracestate %q with WithoutOpenTelemetry", c.method, c.traceparent, c.tracestate)
		}
	}
	if spans := rec.Started(); len(spans) != 1 || spans[0].Name() != "caller" {
		t.Fatalf("spans %d, want the caller's only", len(spans))
	}
}
