import { readFileSync } from "node:fs";
import {
  type ChannelCredentials,
  type ClientOptions,
  type Interceptor,
  type InterceptorProvider,
  InterceptingCall,
  Metadata,
  credentials,
} from "@grpc/grpc-js";
import { AvatarGatewayClient } from "./gen/avatar/gateway/v1/avatar_gateway_service";
import { traceContextInterceptor } from "./tracing";

/**
 * PEM data: a Buffer or a string holding the PEM text (it contains `-----BEGIN`), or any
 * other string, read as the path of a PEM file.
 */
export type Pem = string | Buffer;

export interface ConnectOptions {
  /**
   * The CA certificate(s) that sign the gateway's certificate (PEM, see `Pem`). Default: the
   * roots Node trusts (its bundled Mozilla roots and `NODE_EXTRA_CA_CERTS`), or the file named
   * by `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`.
   */
  ca?: Pem;
  /** Client certificate chain (PEM) presented for mutual TLS; needs `key`. */
  cert?: Pem;
  /** Private key (PEM) of `cert`. */
  key?: Pem;
  /**
   * The name the gateway's certificate is checked against (and sent as SNI and :authority)
   * instead of the target's host, e.g. `localhost` when dialing `127.0.0.1:50051`.
   */
  serverName?: string;
  /**
   * A tenant API key or a JWT, sent on every call (unary and streaming) as the metadata
   * `authorization: Bearer <credential>`. Without the `Bearer ` prefix.
   */
  credential?: string;
  /**
   * Connects without TLS. For the sandbox and local development only: everything, including
   * a credential, crosses the network in clear text. Excludes `ca`, `cert`, `key` and
   * `serverName`.
   */
  plaintext?: boolean;
  /**
   * With `plaintext`, sends `credential` anyway. A bearer credential in clear text can be
   * read and replayed by anyone on the path, so this is only for a sandbox gateway on
   * loopback or a private test network. (grpc-js refuses call credentials on an insecure
   * channel, so the header is then added by a client interceptor.)
   */
  allowPlaintextCredential?: boolean;
  /**
   * Sends the caller's OpenTelemetry trace context with every call (default `true`), so that the
   * gateway's spans join the caller's trace: the span of the active context when the call is
   * made, as the W3C Trace Context metadata `traceparent` (and `tracestate`), plus the fields of
   * the global propagator that the application set (the Node SDK's default: W3C trace context and
   * baggage). Without a span in the active context, no `traceparent` is sent. Needs the peer dependency
   * `@opentelemetry/api`; the spans come from the caller's OpenTelemetry SDK. Set `false` when
   * another instrumentation (such as `@opentelemetry/instrumentation-grpc`) already does it.
   */
  propagateTraceContext?: boolean;
  /** More grpc-js client options (keepalive, interceptors, ...), passed through. */
  clientOptions?: Partial<ClientOptions>;
}

/** What a grpc-js client constructor takes besides the target. */
export interface ChannelConfig {
  credentials: ChannelCredentials;
  options: Partial<ClientOptions>;
}

function pem(value: Pem): Buffer {
  if (Buffer.isBuffer(value)) return value;
  return value.includes("-----BEGIN") ? Buffer.from(value) : readFileSync(value);
}

function bearer(credential: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${credential}`);
  return metadata;
}

/**
 * Appends `interceptor` to the client's interceptors, or to its `interceptor_providers` when the
 * caller gave those: grpc-js refuses a client with both.
 */
function addInterceptor(options: Partial<ClientOptions>, interceptor: Interceptor): void {
  const providers: InterceptorProvider[] | undefined = options.interceptor_providers;
  if (providers !== undefined && providers.length > 0) {
    options.interceptor_providers = [...providers, () => interceptor];
  } else {
    options.interceptors = [...(options.interceptors ?? []), interceptor];
  }
}

/**
 * The channel credentials and client options for `options` (see `connect()`), for
 * `new AvatarGatewayClient(target, c.credentials, c.options)` or any other grpc-js client of
 * the same gateway (the health client, for instance). The options' interceptors include the
 * trace context one (unless `propagateTraceContext` is `false`). Interceptors given in a call's
 * own options replace the client's in grpc-js: add `traceContextInterceptor` to them.
 *
 * @throws Error when the options contradict each other: `cert` without `key` (or the
 *   reverse), `plaintext` with a TLS option, a `credential` with `plaintext` but without
 *   `allowPlaintextCredential`, or a `credential` that is empty or contains whitespace (such
 *   as a `Bearer ` prefix).
 * @throws the fs error (ENOENT, ...) when a PEM file cannot be read, and Node's TLS error when
 *   the PEM data is not a valid certificate or key.
 */
export function channelConfig(options: ConnectOptions = {}): ChannelConfig {
  const { ca, cert, key, serverName, credential, plaintext, allowPlaintextCredential } = options;
  const clientOptions: Partial<ClientOptions> = { ...options.clientOptions };
  if (options.propagateTraceContext ?? true) addInterceptor(clientOptions, traceContextInterceptor);
  if (credential !== undefined && (credential === "" || /\s/.test(credential))) {
    throw new Error("credential must be a non-empty API key or token, without whitespace or a Bearer prefix");
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new Error("cert and key go together: give both for mutual TLS, or neither");
  }
  if (plaintext) {
    if (ca !== undefined || cert !== undefined || key !== undefined || serverName !== undefined) {
      throw new Error("plaintext excludes the TLS options ca, cert, key and serverName");
    }
    if (credential === undefined) return { credentials: credentials.createInsecure(), options: clientOptions };
    if (!allowPlaintextCredential) {
      throw new Error(
        "refusing to send a credential in clear text: use TLS, or set allowPlaintextCredential for a local sandbox",
      );
    }
    const authorize: Interceptor = (callOptions, nextCall) =>
      new InterceptingCall(nextCall(callOptions), {
        start(metadata, listener, next) {
          metadata.merge(bearer(credential));
          next(metadata, listener);
        },
      });
    addInterceptor(clientOptions, authorize);
    return { credentials: credentials.createInsecure(), options: clientOptions };
  }
  let channel = credentials.createSsl(
    ca === undefined ? null : pem(ca),
    key === undefined ? null : pem(key),
    cert === undefined ? null : pem(cert),
  );
  if (credential !== undefined) {
    const perCall = credentials.createFromMetadataGenerator((_, callback) => callback(null, bearer(credential)));
    channel = credentials.combineChannelCredentials(channel, perCall);
  }
  if (serverName !== undefined) {
    clientOptions["grpc.ssl_target_name_override"] = serverName;
    clientOptions["grpc.default_authority"] = serverName;
  }
  return { credentials: channel, options: clientOptions };
}

/**
 * An AvatarGatewayClient for `target` (`host:port`), over TLS unless `plaintext` is set,
 * with an optional client certificate (mutual TLS), a credential sent on every call, and the
 * caller's OpenTelemetry trace context on every call (see `propagateTraceContext`):
 *
 * ```ts
 * const client = connect("gateway.example.com:443", {
 *   ca: "/etc/avatar/ca.pem",                          // default: the system roots
 *   credential: process.env.AVATAR_GATEWAY_CREDENTIAL, // API key or JWT
 * });
 * const stream = await drive(client, session.name, linear16(16000, 1));
 * ```
 *
 * The client connects lazily: TLS failures (an untrusted certificate, a missing client
 * certificate the gateway requires) fail the calls with UNAVAILABLE, and a credential the
 * gateway rejects fails them with UNAUTHENTICATED.
 *
 * @throws the errors of `channelConfig()`, synchronously.
 */
export function connect(target: string, options: ConnectOptions = {}): AvatarGatewayClient {
  const config = channelConfig(options);
  return new AvatarGatewayClient(target, config.credentials, config.options);
}
