/**
 * connect() against a real grpc-js server on loopback, over TLS with the fixed certificates of
 * clients/testdata/tls (ca.pem signs server.pem, valid for localhost, 127.0.0.1 and ::1, and
 * client.pem, whose URI SAN is a SPIFFE id; other-ca.pem is unrelated).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import {
  ROOT_CONTEXT,
  type Span,
  TraceFlags,
  context,
  createTraceState,
  propagation,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider } from "@opentelemetry/sdk-trace-base";
import {
  InterceptingCall,
  type Interceptor,
  Metadata,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
  Server,
  ServerCredentials,
  status,
} from "@grpc/grpc-js";
import {
  type AvatarGatewayClient,
  AvatarGatewayService,
  type ConnectOptions,
  type DriveRequest,
  DriveResponse,
  ListVendorsRequest,
  type ListVendorsResponse,
  connect,
  drive,
  linear16,
} from "../src";

const TLS = resolve(__dirname, "../../../testdata/tls");
const CA = resolve(TLS, "ca.pem");
const OTHER_CA = resolve(TLS, "other-ca.pem");
const CLIENT_CERT = resolve(TLS, "client.pem");
const CLIENT_KEY = resolve(TLS, "client-key.pem");
const SPIFFE_ID = "spiffe://test.avatargateway.dev/tenant/acme";

/** One call as the server saw it. */
interface Seen {
  method: string;
  authorization: unknown[];
  authority: string;
  /** The client certificate's subjectaltname, "" when none was presented. */
  clientSan: string;
  /** The trace context metadata (W3C traceparent and tracestate, W3C baggage). */
  traceparent: unknown[];
  tracestate: unknown[];
  baggage: unknown[];
}

interface TestServer {
  target: string;
  seen: Seen[];
  stop(): void;
}

function observe(method: string, call: ServerUnaryCall<unknown, unknown> | ServerDuplexStream<unknown, unknown>): Seen {
  const auth = call.getAuthContext(); // peer certificate only when the server asked for it
  return {
    method,
    authorization: call.metadata.get("authorization"),
    authority: call.getHost(),
    clientSan: auth.sslPeerCertificate?.subjectaltname ?? "",
    traceparent: call.metadata.get("traceparent"),
    tracestate: call.metadata.get("tracestate"),
    baggage: call.metadata.get("baggage"),
  };
}

/** A gateway stand-in with ListVendors and Drive; TLS unless `plaintext`. */
async function startServer(mode: "tls" | "mtls" | "plaintext"): Promise<TestServer> {
  const creds =
    mode === "plaintext"
      ? ServerCredentials.createInsecure()
      : ServerCredentials.createSsl(
          readFileSync(CA),
          [{ cert_chain: readFileSync(resolve(TLS, "server.pem")), private_key: readFileSync(resolve(TLS, "server-key.pem")) }],
          mode === "mtls",
        );
  const seen: Seen[] = [];
  const server = new Server();
  server.addService(AvatarGatewayService, {
    listVendors(call: ServerUnaryCall<ListVendorsRequest, ListVendorsResponse>, done: sendUnaryData<ListVendorsResponse>) {
      seen.push(observe("ListVendors", call));
      done(null, { vendors: [] });
    },
    drive(call: ServerDuplexStream<DriveRequest, DriveResponse>) {
      seen.push(observe("Drive", call));
      call.on("data", (req: DriveRequest) => {
        if (req.config) call.write(DriveResponse.fromPartial({ started: { session: req.config.session } }));
      });
      call.on("end", () => call.end());
    },
  });
  const port = await new Promise<number>((ok, fail) =>
    server.bindAsync("127.0.0.1:0", creds, (err, p) => (err ? fail(err) : ok(p))),
  );
  return { target: `127.0.0.1:${port}`, seen, stop: () => server.forceShutdown() };
}

/** ListVendors; resolves with the status code (0 for OK). */
function listVendors(client: AvatarGatewayClient): Promise<number> {
  return new Promise((ok) =>
    client.listVendors(ListVendorsRequest.fromPartial({}), new Metadata(), { deadline: Date.now() + 5000 }, (err) =>
      ok(err ? err.code : status.OK),
    ),
  );
}

/** A config-first Drive that half-closes at once; resolves with the final status code. */
async function driveOnce(client: AvatarGatewayClient): Promise<number> {
  const stream = await drive(client, "sessions/s1", linear16(16000, 1), { deadline: Date.now() + 5000 });
  assert.equal(stream.started?.session, "sessions/s1");
  stream.halfClose();
  for await (const _ of stream); // drain until the OK status
  return (await stream.status).code;
}

async function withClient<T>(target: string, options: ConnectOptions, f: (c: AvatarGatewayClient) => Promise<T>): Promise<T> {
  const client = connect(target, options);
  try {
    return await f(client);
  } finally {
    client.close();
  }
}

test("TLS with a custom CA sends the credential as Bearer on unary and streaming calls", async () => {
  const server = await startServer("tls");
  try {
    await withClient(server.target, { ca: CA, credential: "agw_key-1" }, async (client) => {
      assert.equal(await listVendors(client), status.OK);
      assert.equal(await driveOnce(client), status.OK);
    });
    assert.deepEqual(
      server.seen.map((s) => [s.method, s.authorization, s.clientSan]),
      [
        ["ListVendors", ["Bearer agw_key-1"], ""],
        ["Drive", ["Bearer agw_key-1"], ""],
      ],
    );
    // The CA as a Buffer and as PEM text; serverName replaces the target's host.
    const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2ln";
    await withClient(server.target, { ca: readFileSync(CA), serverName: "localhost", credential: jwt }, async (client) => {
      assert.equal(await listVendors(client), status.OK);
    });
    await withClient(server.target, { ca: readFileSync(CA, "utf8") }, async (client) => {
      assert.equal(await listVendors(client), status.OK);
    });
    assert.deepEqual(server.seen.slice(2).map((s) => [s.authorization, s.authority]), [
      [[`Bearer ${jwt}`], "localhost"],
      [[], server.target],
    ]);
    // The overridden name is the one checked against the certificate.
    await withClient(server.target, { ca: CA, serverName: "elsewhere.example" }, async (client) => {
      assert.equal(await listVendors(client), status.UNAVAILABLE);
    });
    assert.equal(server.seen.length, 4);
  } finally {
    server.stop();
  }
});

test("a certificate the client does not trust fails with UNAVAILABLE and sends nothing", async () => {
  const server = await startServer("tls");
  try {
    for (const options of [{ ca: OTHER_CA }, {}] as ConnectOptions[]) { // {}: the system roots
      await withClient(server.target, { ...options, credential: "agw_key-1" }, async (client) => {
        assert.equal(await listVendors(client), status.UNAVAILABLE);
        await assert.rejects(driveOnce(client), (err: ServiceError) => err.code === status.UNAVAILABLE);
      });
    }
    assert.equal(server.seen.length, 0);
  } finally {
    server.stop();
  }
});

test("TLS is the default: a plaintext server is not reached without the plaintext option", async () => {
  const server = await startServer("plaintext");
  try {
    await withClient(server.target, { ca: CA }, async (client) => {
      assert.equal(await listVendors(client), status.UNAVAILABLE);
    });
    assert.equal(server.seen.length, 0);
  } finally {
    server.stop();
  }
});

test("mutual TLS: a server that requires a client certificate accepts only a client that presents one", async () => {
  const server = await startServer("mtls");
  try {
    await withClient(server.target, { ca: CA, credential: "agw_key-1" }, async (client) => {
      assert.equal(await listVendors(client), status.UNAVAILABLE);
    });
    assert.equal(server.seen.length, 0);
    await withClient(server.target, { ca: CA, cert: CLIENT_CERT, key: readFileSync(CLIENT_KEY), credential: "agw_key-1" }, async (client) => {
      assert.equal(await listVendors(client), status.OK);
      assert.equal(await driveOnce(client), status.OK);
    });
    assert.deepEqual(
      server.seen.map((s) => [s.method, s.authorization, s.clientSan]),
      [
        ["ListVendors", ["Bearer agw_key-1"], `URI:${SPIFFE_ID}`],
        ["Drive", ["Bearer agw_key-1"], `URI:${SPIFFE_ID}`],
      ],
    );
  } finally {
    server.stop();
  }
});

test("plaintext: a credential is refused unless explicitly allowed, then sent on every call", async () => {
  const server = await startServer("plaintext");
  try {
    assert.throws(() => connect(server.target, { plaintext: true, credential: "agw_key-1" }), /clear text/);
    await withClient(server.target, { plaintext: true }, async (client) => {
      assert.equal(await listVendors(client), status.OK);
    });
    await withClient(server.target, { plaintext: true, credential: "agw_key-1", allowPlaintextCredential: true }, async (client) => {
      assert.equal(await listVendors(client), status.OK);
      assert.equal(await driveOnce(client), status.OK);
    });
    assert.deepEqual(
      server.seen.map((s) => [s.method, s.authorization]),
      [
        ["ListVendors", []],
        ["ListVendors", ["Bearer agw_key-1"]],
        ["Drive", ["Bearer agw_key-1"]],
      ],
    );
  } finally {
    server.stop();
  }
});

test("contradictory or unusable options throw before connecting", () => {
  const target = "127.0.0.1:1";
  assert.throws(() => connect(target, { ca: CA, cert: CLIENT_CERT }), /cert and key go together/);
  assert.throws(() => connect(target, { ca: CA, key: CLIENT_KEY }), /cert and key go together/);
  assert.throws(() => connect(target, { plaintext: true, ca: CA }), /plaintext excludes/);
  assert.throws(() => connect(target, { plaintext: true, serverName: "localhost" }), /plaintext excludes/);
  assert.throws(() => connect(target, { credential: "Bearer agw_key-1" }), /without whitespace or a Bearer prefix/);
  assert.throws(() => connect(target, { credential: "" }), /non-empty/);
  assert.throws(() => connect(target, { ca: resolve(TLS, "missing.pem") }), { code: "ENOENT" });
});

// ---------------------------------------------------------------------------------------------
// Trace context: the OpenTelemetry SDK in the test, as in a caller's service, with the active
// context in AsyncLocalStorage.

const W3C_PROPAGATORS = new CompositePropagator({
  propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
});
const tracer = new BasicTracerProvider().getTracer("connect-test");
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

/** The trace context the server saw on each call: [method, traceparent, tracestate, baggage]. */
function traceHeaders(server: TestServer): unknown[][] {
  return server.seen.map((s) => [s.method, s.traceparent, s.tracestate, s.baggage]);
}

/** A unary call and a Drive through connect(), inside `span` (none: the root context). */
async function callsIn(target: string, options: ConnectOptions, span?: Span): Promise<void> {
  const ctx = span === undefined ? ROOT_CONTEXT : trace.setSpan(context.active(), span);
  await context.with(ctx, () =>
    withClient(target, options, async (client) => {
      assert.equal(await listVendors(client), status.OK);
      assert.equal(await driveOnce(client), status.OK);
    }),
  );
}

test("the caller's trace context goes as W3C traceparent and tracestate with every call", async (t) => {
  propagation.setGlobalPropagator(W3C_PROPAGATORS);
  t.after(() => propagation.disable());
  const server = await startServer("tls");
  try {
    // The caller's span continues a remote parent that set a tracestate entry, with baggage.
    const remote = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: TraceFlags.SAMPLED,
      traceState: createTraceState("vendor1=opaque-1"),
      isRemote: true,
    });
    const bag = propagation.createBaggage({ tenant: { value: "acme" } });
    const span = tracer.startSpan("caller", {}, remote);
    await context.with(propagation.setBaggage(context.active(), bag), () =>
      callsIn(server.target, { ca: CA, credential: "agw_key-1" }, span),
    );
    span.end();
    const { traceId, spanId } = span.spanContext();
    assert.equal(traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
    const expected = [`00-${traceId}-${spanId}-01`];
    assert.deepEqual(traceHeaders(server), [
      ["ListVendors", expected, ["vendor1=opaque-1"], ["tenant=acme"]],
      ["Drive", expected, ["vendor1=opaque-1"], ["tenant=acme"]],
    ]);
  } finally {
    server.stop();
  }
});

test("the W3C trace context goes even when the application set no global propagator", async () => {
  propagation.disable(); // the API's default: a no-op propagator
  const server = await startServer("plaintext");
  try {
    const span = tracer.startSpan("caller", { root: true });
    const bag = propagation.createBaggage({ tenant: { value: "acme" } });
    await context.with(propagation.setBaggage(ROOT_CONTEXT, bag), () => callsIn(server.target, { plaintext: true }, span));
    // Also with interceptor providers (grpc-js refuses a client with both kinds).
    const seenBefore = server.seen.length;
    const passThrough: Interceptor = (options, next) => new InterceptingCall(next(options));
    await callsIn(server.target, { plaintext: true, clientOptions: { interceptor_providers: [() => passThrough] } }, span);
    span.end();
    const { traceId, spanId } = span.spanContext();
    assert.match(traceId, /^[0-9a-f]{32}$/);
    const expected = [`00-${traceId}-${spanId}-01`];
    assert.equal(seenBefore, 2);
    assert.deepEqual(traceHeaders(server), [
      ["ListVendors", expected, [], []],
      ["Drive", expected, [], []],
      ["ListVendors", expected, [], []],
      ["Drive", expected, [], []],
    ]);
  } finally {
    server.stop();
  }
});

test("without an active span, or with propagateTraceContext false, no trace context is sent", async (t) => {
  propagation.setGlobalPropagator(W3C_PROPAGATORS);
  t.after(() => propagation.disable());
  const server = await startServer("plaintext");
  try {
    await callsIn(server.target, { plaintext: true });
    const span = tracer.startSpan("caller", { root: true });
    await callsIn(server.target, { plaintext: true, propagateTraceContext: false }, span);
    span.end();
    assert.deepEqual(traceHeaders(server), [
      ["ListVendors", [], [], []],
      ["Drive", [], [], []],
      ["ListVendors", [], [], []],
      ["Drive", [], [], []],
    ]);
  } finally {
    server.stop();
  }
});
