/**
 * Node driver of the cross-language interop suite (tests/interop): reads one scenario as
 * JSON on stdin, runs its steps against the gateway with the generated stubs and the
 * helpers, and prints what it observes as JSON lines on stdout. The Python runner compares
 * them with the scenario's expectations; this program asserts nothing itself.
 */
import { text } from "node:stream/consumers";
import type { ServiceError } from "@grpc/grpc-js";
import {
  AvatarGatewayClient,
  type ConnectOptions,
  CreateSessionRequest,
  type DriveResponse,
  DriveStream,
  GetSessionRequest,
  type Session,
  chunks,
  connect,
  drive,
  errorInfo,
  linear16,
  paced,
  readWav,
  sessionStateToJSON,
} from "../src";

interface Step {
  op: string;
  event?: string;
  turn_id?: string;
  timeout_ms?: number;
  wav?: string;
  pace?: boolean;
  chunk_ms?: number;
  text?: string;
  final?: boolean;
  name?: string;
  session?: string;
  deadline_ms?: number;
  config?: boolean;
  ms?: number;
  vendor?: string;
  avatar_id?: string;
}

interface Tls {
  ca_file?: string;
  server_name?: string;
  cert_file?: string;
  key_file?: string;
}

interface Scenario {
  target: string;
  vendor: string;
  avatar_id: string;
  steps: Step[];
  /** TLS to the gateway; plaintext when absent. */
  tls?: Tls;
  /** API key or JWT, sent on every call as `authorization: Bearer <credential>`. */
  credential?: string;
}

/** connect() options for the scenario's `tls` and `credential`. */
function connectOptions(sc: Scenario): ConnectOptions {
  const given = (v: string | null | undefined) => v || undefined; // null or "": absent
  const credential = given(sc.credential);
  if (!sc.tls) {
    // The sandbox gateway on loopback: the runner's choice, so a credential may go in clear text.
    return { plaintext: true, credential, allowPlaintextCredential: credential !== undefined };
  }
  const { ca_file, server_name, cert_file, key_file } = sc.tls;
  return { ca: given(ca_file), serverName: given(server_name), cert: given(cert_file), key: given(key_file), credential };
}

type Line = Record<string, unknown>;

function emit(line: Line): void {
  process.stdout.write(JSON.stringify(line) + "\n");
}

function statusLine(op: string, err: unknown): Line {
  const line: Line = { type: "status", op, code: 0, message: "" };
  if (err) {
    const e = err as ServiceError;
    line.code = typeof e.code === "number" ? e.code : 2;
    line.message = e.details ?? String(err);
    const info = errorInfo(err);
    if (info) line.error_info = info;
  }
  return line;
}

function eventLine(ev: DriveResponse): Line {
  if (ev.started) return { type: "event", event: "started" };
  if (ev.speechStarted) return { type: "event", event: "speech_started", turn_id: ev.speechStarted.turnId };
  if (ev.speechEnded)
    return { type: "event", event: "speech_ended", turn_id: ev.speechEnded.turnId, interrupted: ev.speechEnded.interrupted };
  if (ev.transcript) return { type: "event", event: "transcript", turn_id: ev.transcript.turnId };
  if (ev.interrupted) return { type: "event", event: "interrupted", turn_id: ev.interrupted.turnId };
  if (ev.warning) return { type: "event", event: "warning", turn_id: ev.warning.turnId, reason: ev.warning.reason };
  if (ev.turnFailed)
    return { type: "event", event: "turn_failed", turn_id: ev.turnFailed.turnId, reason: ev.turnFailed.reason };
  if (ev.goAway) return { type: "event", event: "go_away" };
  return { type: "event", event: "unknown" };
}

class Driver {
  private readonly client: AvatarGatewayClient;
  private session = "";
  private stream: DriveStream | undefined;
  private readonly events: Line[] = [];
  private ended = false;
  private waiters: Array<() => void> = [];

  constructor(private readonly sc: Scenario) {
    this.client = connect(sc.target, connectOptions(sc));
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  private record(line: Line): void {
    emit(line);
    this.events.push(line);
    this.notify();
  }

  private finish(err: unknown): void {
    emit(statusLine("drive", err));
    this.ended = true;
    this.notify();
  }

  private async waitFor(timeoutMs: number, pred: () => boolean): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  private read(stream: DriveStream): void {
    (async () => {
      try {
        for await (const ev of stream) this.record(eventLine(ev));
        this.finish(null);
      } catch (err) {
        this.finish(err);
      }
    })();
  }

  private unary<Req, Res>(method: string, req: Req): Promise<Res> {
    const fn = (this.client as unknown as Record<string, Function>)[method].bind(this.client);
    return new Promise((resolve, reject) =>
      fn(req, { deadline: Date.now() + 30000 }, (err: ServiceError | null, res: Res) => (err ? reject(err) : resolve(res))),
    );
  }

  private async sent(op: string, f: () => Promise<void> | void): Promise<void> {
    const line: Line = { type: "sent", op };
    try {
      await f();
    } catch (err) {
      line.error = String(err);
    }
    emit(line);
  }

  private hasEvent(s: Step): boolean {
    return this.events.some((e) => e.event === s.event && (!s.turn_id || e.turn_id === s.turn_id));
  }

  async run(s: Step): Promise<void> {
    switch (s.op) {
      case "create_session": {
        try {
          const request = CreateSessionRequest.fromPartial({
            vendor: s.vendor || this.sc.vendor,
            avatarId: s.avatar_id || this.sc.avatar_id,
          });
          const sess = await this.unary<CreateSessionRequest, Session>("createSession", request);
          this.session = sess.name;
          emit({ type: "session", name: sess.name, state: sessionStateToJSON(sess.state) });
          emit(statusLine(s.op, null));
        } catch (err) {
          emit(statusLine(s.op, err));
        }
        break;
      }
      case "get_session":
      case "close_session": {
        const method = s.op === "get_session" ? "getSession" : "closeSession";
        try {
          await this.unary(method, GetSessionRequest.fromPartial({ name: s.name || this.session }));
          emit(statusLine(s.op, null));
        } catch (err) {
          emit(statusLine(s.op, err));
        }
        break;
      }
      case "drive": {
        const options = s.deadline_ms ? { deadline: Date.now() + s.deadline_ms } : {};
        if (s.config === false) {
          this.stream = DriveStream.open(this.client, options);
        } else {
          try {
            this.stream = await drive(this.client, s.session || this.session, linear16(16000, 1), options);
          } catch (err) {
            this.finish(err);
            return;
          }
          this.record(eventLine({ started: this.stream.started, eventTime: undefined }));
        }
        this.read(this.stream);
        break;
      }
      case "send_audio": {
        const stream = this.stream!;
        let bytes = 0;
        const line: Line = { type: "sent", op: s.op };
        try {
          const audio = await readWav(s.wav!);
          const source = s.pace === false ? chunks(audio, s.chunk_ms ?? 20) : paced(audio, s.chunk_ms ?? 20);
          for await (const c of source) {
            await stream.sendAudio(c);
            bytes += c.length;
          }
        } catch (err) {
          line.error = String(err);
        }
        line.bytes = bytes;
        emit(line);
        break;
      }
      case "send_text":
        await this.sent(s.op, () => this.stream!.sendText(s.text ?? "", s.final ?? true));
        break;
      case "end_turn":
        await this.sent(s.op, () => this.stream!.endTurn());
        break;
      case "interrupt":
        await this.sent(s.op, () => this.stream!.interrupt());
        break;
      case "half_close":
        await this.sent(s.op, () => this.stream!.halfClose());
        break;
      case "cancel":
        await this.sent(s.op, () => this.stream?.cancel());
        break;
      case "wait_event": {
        await this.waitFor(s.timeout_ms ?? 15000, () => this.hasEvent(s) || this.ended);
        emit({ type: "wait", event: s.event, turn_id: s.turn_id ?? "", ok: this.hasEvent(s) });
        break;
      }
      case "wait_status": {
        const ok = await this.waitFor(s.timeout_ms ?? 15000, () => this.ended);
        emit({ type: "wait", event: "status", ok });
        break;
      }
      case "sleep":
        await new Promise((r) => setTimeout(r, s.ms ?? 0));
        break;
      case "mark":
        emit({ type: "mark", name: s.name });
        break;
      default:
        emit({ type: "error", op: s.op, message: "unknown op" });
    }
  }

  close(): void {
    if (!this.ended) this.stream?.cancel();
    this.client.close();
  }
}

async function main(): Promise<void> {
  const sc = JSON.parse(await text(process.stdin)) as Scenario;
  const d = new Driver(sc);
  for (const s of sc.steps) await d.run(s);
  d.close();
  emit({ type: "done" });
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
