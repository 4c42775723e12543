package gatewayclient

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/stats"
)

// WithoutOpenTelemetry leaves out the OpenTelemetry instrumentation that NewConn adds by
// default: no trace context in the calls' metadata, no client spans, no client metrics.
// Use it when the connection gets its own instrumentation through WithDialOptions (for
// example grpc.WithStatsHandler(otelgrpc.NewClientHandler(...)) with a tracer provider
// that is not the global one), so that calls are not traced twice.
func WithoutOpenTelemetry() ConnOption {
	return func(c *connConfig) { c.noTelemetry = true }
}

// newTelemetryHandler is the grpc-go stats handler of NewConn: the otelgrpc client handler
// with the global tracer and meter providers (otel.SetTracerProvider, otel.SetMeterProvider),
// which starts a client span for each call as a child of the span in the call's context, and
// sends that span's context with the call as the W3C Trace Context metadata traceparent (and
// tracestate when it is not empty), through traceContextPropagator. Without a tracer
// provider set, the spans are not recorded and the metadata carries the span context of the
// call's context, if it has a valid one; without one, nothing is sent.
func newTelemetryHandler() stats.Handler {
	return otelgrpc.NewClientHandler(otelgrpc.WithPropagators(traceContextPropagator{}))
}

// traceContextPropagator injects the W3C Trace Context, which the gateway reads, and then the
// fields of the application's global propagator (otel.SetTextMapPropagator), looked up on
// each call. The global propagator is a no-op until the application sets one, so without the
// first part a caller who set up tracing but no propagator would get no trace through the
// gateway. With it, the application's choice still holds: its propagator adds its fields
// (baggage, B3, ...) and, if it writes traceparent or tracestate itself, its values replace
// these (the carrier's Set replaces).
type traceContextPropagator struct{}

var _ propagation.TextMapPropagator = traceContextPropagator{}

func (traceContextPropagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	propagation.TraceContext{}.Inject(ctx, carrier)
	otel.GetTextMapPropagator().Inject(ctx, carrier)
}

func (traceContextPropagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return otel.GetTextMapPropagator().Extract(propagation.TraceContext{}.Extract(ctx, carrier), carrier)
}

func (traceContextPropagator) Fields() []string {
	fields := propagation.TraceContext{}.Fields()
	for _, f := range otel.GetTextMapPropagator().Fields() {
		seen := false
		for _, g := range fields {
			seen = seen || f == g
		}
		if !seen {
			fields = append(fields, f)
		}
	}
	return fields
}
