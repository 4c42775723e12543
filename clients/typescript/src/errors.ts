import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { ServiceError } from "@grpc/grpc-js";

/** ErrorInfo.domain of every error the gateway emits. */
export const DOMAIN = "avatargateway.dev";

/** google.rpc.ErrorInfo: why a call failed (reason UPPER_SNAKE, lowerCamelCase metadata). */
export interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

const ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo";

function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const r = new BinaryReader(bytes);
  const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 1) info.reason = r.string();
    else if (field === 2) info.domain = r.string();
    else if (field === 3) {
      const entry = new BinaryReader(r.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [f, wt] = entry.tag();
        if (f === 1) key = entry.string();
        else if (f === 2) value = entry.string();
        else entry.skip(wt);
      }
      info.metadata[key] = value;
    } else r.skip(wireType);
  }
  return info;
}

/** The `details` of a google.rpc.Status, as [type_url, value] pairs. */
function statusDetails(bytes: Uint8Array): Array<[string, Uint8Array]> {
  const r = new BinaryReader(bytes);
  const details: Array<[string, Uint8Array]> = [];
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field === 3) {
      const any = new BinaryReader(r.bytes());
      let typeUrl = "";
      let value: Uint8Array = new Uint8Array();
      while (any.pos < any.len) {
        const [f, wt] = any.tag();
        if (f === 1) typeUrl = any.string();
        else if (f === 2) value = any.bytes();
        else any.skip(wt);
      }
      details.push([typeUrl, value]);
    } else r.skip(wireType);
  }
  return details;
}

/**
 * The google.rpc.ErrorInfo of a failed gateway call, decoded from the google.rpc.Status in
 * the `grpc-status-details-bin` trailer; undefined when the error carries none.
 */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  const metadata = (err as Partial<ServiceError> | undefined)?.metadata;
  if (!metadata || typeof metadata.get !== "function") return undefined;
  for (const raw of metadata.get("grpc-status-details-bin")) {
    if (typeof raw === "string") continue;
    for (const [typeUrl, value] of statusDetails(raw)) {
      if (typeUrl === ERROR_INFO_TYPE) return decodeErrorInfo(value);
    }
  }
  return undefined;
}
