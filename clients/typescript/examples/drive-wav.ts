/**
 * Creates an avatar session, drives it with a WAV file at real time, ends the turn,
 * interrupts, prints every event and closes the session. Without --avatar, it takes the
 * vendor's first avatar from ListAvatars.
 *
 * It connects with TLS, trusting the system roots or --ca-file (a PEM file), and sends --credential
 * (default $AVATAR_GATEWAY_CREDENTIAL: an API key or a JWT) as `authorization: Bearer` on every
 * call. --plaintext connects without TLS, to the local sandbox; it sends a credential only to
 * a loopback target, where it does not cross the network.
 *
 *   cd clients/typescript && npm ci && npm run build
 *   node dist/examples/drive-wav.js --target 127.0.0.1:50051 --plaintext --wav ../testdata/sample-16k-mono.wav
 *   node dist/examples/drive-wav.js --target gateway.example.com:443 --ca-file ca.pem --credential "$KEY"
 */
import { parseArgs } from "node:util";
import { type ServiceError, status } from "@grpc/grpc-js";
import {
  AvatarGatewayClient,
  CreateSessionRequest,
  DriveResponse,
  DriveStarted,
  ListAvatarsRequest,
  ListAvatarsResponse,
  Session,
  audioFormat,
  connect,
  drive,
  durationMs,
  errorInfo,
  readWav,
  sessionStateToJSON,
} from "../src";

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: process.env.AVATAR_GATEWAY_TARGET ?? "127.0.0.1:50051" },
    vendor: { type: "string", default: "zegocloud" },
    avatar: { type: "string", default: "" }, // empty: the vendor's first avatar
    wav: { type: "string", default: "../testdata/sample-16k-mono.wav" },
    "ca-file": { type: "string" }, // PEM file of the CA that signs the gateway's certificate; default: system roots
    credential: { type: "string", default: process.env.AVATAR_GATEWAY_CREDENTIAL || undefined },
    plaintext: { type: "boolean", default: false }, // no TLS: the local sandbox
  },
});

/** Whether `target` (host:port) is this machine, where a plaintext credential stays local. */
function isLoopback(target: string): boolean {
  const host = target.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Adapts a grpc-js unary callback to a promise. */
function unary<Res>(start: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res))));
}

function describe(what: string, err: unknown): string {
  const e = err as ServiceError;
  const info = errorInfo(err);
  const code = status[e.code] ?? e.code;
  return info
    ? `${what}: ${code} ${info.reason} (${info.domain} ${JSON.stringify(info.metadata)}): ${e.details}`
    : `${what}: ${code}: ${e.details ?? e}`;
}

/** The id of the first avatar the vendor lists. */
async function firstAvatar(client: AvatarGatewayClient, vendor: string): Promise<string> {
  const request = ListAvatarsRequest.fromPartial({ parent: `vendors/${vendor}`, pageSize: 1 });
  const listed = await unary<ListAvatarsResponse>((cb) => client.listAvatars(request, cb)).catch((err) => {
    throw new Error(describe("ListAvatars", err));
  });
  if (listed.avatars.length === 0) throw new Error(`vendor ${vendor} lists no avatars: pass --avatar`);
  return listed.avatars[0].avatarId;
}

async function main(): Promise<void> {
  const audio = await readWav(args.wav!);
  const client = connect(args.target!, {
    ca: args["ca-file"],
    credential: args.credential,
    plaintext: args.plaintext,
    allowPlaintextCredential: args.plaintext && isLoopback(args.target!),
  });
  const avatarId = args.avatar || (await firstAvatar(client, args.vendor!));
  const request = CreateSessionRequest.fromPartial({ vendor: args.vendor, avatarId });
  const session = await unary<Session>((cb) => client.createSession(request, cb)).catch((err) => {
    throw new Error(describe("CreateSession", err));
  });
  console.log(`session ${session.name} ready: ${JSON.stringify(session.playback)}`);
  try {
    const stream = await drive(client, session.name, audioFormat(audio));
    console.log(`started: ${JSON.stringify(DriveStarted.toJSON(stream.started!))}`);
    let speaking!: () => void;
    const speechStarted = new Promise<void>((resolve) => (speaking = resolve));
    const printer = (async () => {
      for await (const ev of stream) {
        console.log(`event: ${JSON.stringify(DriveResponse.toJSON(ev))}`);
        if (ev.speechStarted) speaking();
      }
    })();
    console.log(`sending ${durationMs(audio)} ms of audio at real time`);
    await stream.sendPaced(audio, 20);
    await stream.endTurn();
    await Promise.race([speechStarted, new Promise((r) => setTimeout(r, 5000))]); // barge in once it speaks
    await stream.interrupt();
    stream.halfClose();
    await printer.catch((err) => {
      throw new Error(describe("Drive", err));
    });
    console.log("drive ended: OK");
  } finally {
    const final = await unary<Session>((cb) => client.closeSession({ name: session.name }, cb));
    console.log(`session ${final.name} closed: ${sessionStateToJSON(final.state)}`);
    client.close();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
