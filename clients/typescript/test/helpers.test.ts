import assert from "node:assert/strict";
import { test } from "node:test";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata } from "@grpc/grpc-js";
import { chunks, durationMs, errorInfo, paced, parseWav } from "../src";

function wav(rate: number, channels: number, bits: number, pcm: Buffer): Buffer {
  const fmt = Buffer.alloc(16);
  fmt.writeUInt16LE(1, 0);
  fmt.writeUInt16LE(channels, 2);
  fmt.writeUInt32LE(rate, 4);
  fmt.writeUInt32LE((rate * channels * bits) / 8, 8);
  fmt.writeUInt16LE((channels * bits) / 8, 12);
  fmt.writeUInt16LE(bits, 14);
  const chunk = (id: string, body: Buffer) => {
    const h = Buffer.alloc(8);
    h.write(id, 0, "latin1");
    h.writeUInt32LE(body.length, 4);
    return Buffer.concat([h, body, body.length % 2 ? Buffer.alloc(1) : Buffer.alloc(0)]);
  };
  const body = Buffer.concat([Buffer.from("WAVE"), chunk("fmt ", fmt), chunk("LIST", Buffer.from([1, 2, 3])), chunk("data", pcm)]);
  const riff = Buffer.alloc(8);
  riff.write("RIFF", 0, "latin1");
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}

test("parseWav reads 16-bit PCM and rejects the rest", () => {
  const audio = parseWav(wav(16000, 1, 16, Buffer.alloc(3200)));
  assert.equal(audio.sampleRateHertz, 16000);
  assert.equal(audio.channels, 1);
  assert.equal(audio.pcm.length, 3200);
  assert.equal(durationMs(audio), 100);
  assert.throws(() => parseWav(wav(16000, 1, 8, Buffer.alloc(100))), /16-bit PCM/);
  assert.throws(() => parseWav(Buffer.from("nope")), /16-bit PCM/);
});

test("chunks and paced split at real time", async () => {
  const audio = { pcm: Buffer.alloc(9602), sampleRateHertz: 16000, channels: 1 }; // 300 ms + 1 sample
  assert.deepEqual(chunks(audio, 100).map((c) => c.length), [3200, 3200, 3200, 2]);
  const start = performance.now();
  let bytes = 0;
  for await (const c of paced(audio, 100)) bytes += c.length;
  const elapsed = performance.now() - start;
  assert.equal(bytes, 9602);
  assert.ok(elapsed >= 290 && elapsed < 2000, `paced 300 ms in ${elapsed} ms`);
});

test("errorInfo decodes google.rpc.Status from grpc-status-details-bin", () => {
  const info = new BinaryWriter().uint32(10).string("SESSION_NOT_FOUND").uint32(18).string("avatargateway.dev");
  info.uint32(26).fork().uint32(10).string("session").uint32(18).string("sessions/x").join();
  const status = new BinaryWriter().uint32(8).int32(5).uint32(18).string("no such session");
  status.uint32(26).fork().uint32(10).string("type.googleapis.com/google.rpc.ErrorInfo").uint32(18).bytes(info.finish()).join();
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(status.finish()));
  assert.deepEqual(errorInfo({ code: 5, details: "", metadata }), {
    reason: "SESSION_NOT_FOUND",
    domain: "avatargateway.dev",
    metadata: { session: "sessions/x" },
  });
  assert.equal(errorInfo({ metadata: new Metadata() }), undefined);
  assert.equal(errorInfo(new Error("plain")), undefined);
});
