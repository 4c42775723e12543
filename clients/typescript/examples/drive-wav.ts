/**
 * Creates an avatar session, drives it with a WAV file at real time, ends the turn,
 * interrupts, prints every event and closes the session. Without --avatar, it takes the
 * vendor's first avatar from ListAvatars.
 *
 *   cd clients/typescript && npm ci && npm run build
 *   node dist/examples/drive-wav.js --target 127.0.0.1:50051 --wav ../testdata/sample-16k-mono.wav
 */
import { parseArgs } from "node:util";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import {
  AvatarGatewayClient,
  CreateSessionRequest,
  DriveResponse,
  DriveStarted,
  ListAvatarsRequest,
  ListAvatarsResponse,
  Session,
  audioFormat,
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
  },
});

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
  const client = new AvatarGatewayClient(args.target!, credentials.createInsecure());
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
