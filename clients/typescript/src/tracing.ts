import { type Context, context, isSpanContextValid, propagation, trace } from "@opentelemetry/api";
import { InterceptingCall, type Interceptor, type Metadata } from "@grpc/grpc-js";

/**
 * The W3C Trace Context fields of the span in `ctx`, the format the gateway reads:
 * `traceparent` (version 00, trace id, span id, flags) and `tracestate` when it is not empty.
 * Nothing when `ctx` has no valid span context. (`@opentelemetry/api` has no W3C propagator:
 * it is in `@opentelemetry/core`, an SDK package that is tied to the API and Node versions.)
 */
function w3cTraceContext(ctx: Context): Record<string, string> {
  const span = trace.getSpanContext(ctx);
  if (span === undefined || !isSpanContextValid(span)) return {};
  const flags = (span.traceFlags & 0xff).toString(16).padStart(2, "0");
  const fields: Record<string, string> = { traceparent: `00-${span.traceId}-${span.spanId}-${flags}` };
  const state = span.traceState?.serialize();
  if (state) fields.tracestate = state;
  return fields;
}

/**
 * Sets the trace context of `ctx` in `metadata`: the W3C Trace Context, then the fields of the
 * application's global propagator (`propagation.setGlobalPropagator`, which the Node SDK sets to
 * W3C trace context and baggage by default), whose values win where both write a field.
 * Existing values of these fields are replaced.
 */
function injectTraceContext(ctx: Context, metadata: Metadata): void {
  const carrier = w3cTraceContext(ctx);
  propagation.inject(ctx, carrier);
  for (const [key, value] of Object.entries(carrier)) metadata.set(key.toLowerCase(), value);
}

/**
 * A grpc-js client interceptor that sends the caller's OpenTelemetry trace context with every
 * call, unary and streaming: the W3C Trace Context (`traceparent`, `tracestate`) of the span in
 * the active context when the call is made, then the fields of the global propagator. Without a
 * span in the active context, it sends nothing but what the global propagator sends (such as
 * baggage). `connect()` and `channelConfig()` add it to the client's interceptors; add it to a
 * call's own `interceptors`, which replace the client's in grpc-js.
 */
export const traceContextInterceptor: Interceptor = (callOptions, nextCall) => {
  const active = context.active();
  return new InterceptingCall(nextCall(callOptions), {
    start(metadata, listener, next) {
      injectTraceContext(active, metadata);
      next(metadata, listener);
    },
  });
};
