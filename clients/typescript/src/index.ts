/**
 * AvatarGateway client for Node: the generated avatar.gateway.v1 stubs (@grpc/grpc-js) and
 * thin helpers: `connect()` (TLS, mutual TLS, a per-call credential and the caller's
 * OpenTelemetry trace context), `drive()`
 * (config-first Drive), `readWav()`, `paced()` and `errorInfo()`.
 */
export * from "./gen/avatar/gateway/v1/avatar_gateway_service";
export { AudioEncoding, AudioFormat, audioEncodingFromJSON, audioEncodingToJSON } from "./gen/avatar/gateway/v1/media";
export { AkoolOptions, TencentOptions, ZegocloudOptions } from "./gen/avatar/gateway/v1/vendor_options";
export { type ChannelConfig, type ConnectOptions, type Pem, channelConfig, connect } from "./connect";
export { traceContextInterceptor } from "./tracing";
export { DEFAULT_MAX_AUDIO_CHUNK_BYTES, DriveStream, drive, type DriveOptions } from "./drive";
export { DOMAIN, errorInfo, type ErrorInfo } from "./errors";
export { paced } from "./pacing";
export { type Audio, audioFormat, bytesPerSecond, chunks, durationMs, linear16, parseWav, readWav } from "./wav";
