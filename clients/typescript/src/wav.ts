import { readFile } from "node:fs/promises";
import { AudioEncoding, type AudioFormat } from "./gen/avatar/gateway/v1/media";

/** 16-bit little-endian PCM (LINEAR16), channels interleaved. */
export interface Audio {
  pcm: Buffer;
  sampleRateHertz: number;
  channels: number;
}

/** The AudioFormat of LINEAR16 audio, for DriveConfig.audioFormat. */
export function linear16(sampleRateHertz: number, channels = 1): AudioFormat {
  return { audioEncoding: AudioEncoding.AUDIO_ENCODING_LINEAR16, sampleRateHertz, audioChannelCount: channels };
}

/** The AudioFormat of `audio`. */
export function audioFormat(audio: Audio): AudioFormat {
  return linear16(audio.sampleRateHertz, audio.channels);
}

/** Bytes of one second of `audio`. */
export function bytesPerSecond(audio: Audio): number {
  return audio.sampleRateHertz * audio.channels * 2;
}

/** Duration of `audio` in milliseconds. */
export function durationMs(audio: Audio): number {
  return (audio.pcm.length * 1000) / bytesPerSecond(audio);
}

/** Parses a RIFF/WAVE file of 16-bit integer PCM (WAVE_FORMAT_PCM or EXTENSIBLE/PCM). */
export function parseWav(data: Buffer): Audio {
  if (data.length < 12 || data.toString("latin1", 0, 4) !== "RIFF" || data.toString("latin1", 8, 12) !== "WAVE") {
    throw new Error("not a 16-bit PCM WAV: no RIFF/WAVE header");
  }
  let fmt: { sampleRateHertz: number; channels: number } | undefined;
  let off = 12;
  while (off + 8 <= data.length) {
    const id = data.toString("latin1", off, off + 4);
    const size = data.readUInt32LE(off + 4);
    const body = data.subarray(off + 8, Math.min(off + 8 + size, data.length));
    if (id === "fmt ") {
      if (body.length < 16) throw new Error("not a 16-bit PCM WAV: short fmt chunk");
      let tag = body.readUInt16LE(0);
      const channels = body.readUInt16LE(2);
      const sampleRateHertz = body.readUInt32LE(4);
      const bits = body.readUInt16LE(14);
      if (tag === 0xfffe && body.length >= 26) tag = body.readUInt16LE(24); // EXTENSIBLE sub-format
      if (tag !== 1 || bits !== 16 || channels < 1) {
        throw new Error(`not a 16-bit PCM WAV: format tag ${tag}, ${bits} bits, ${channels} channels`);
      }
      fmt = { sampleRateHertz, channels };
    } else if (id === "data") {
      if (!fmt) throw new Error("not a 16-bit PCM WAV: data before fmt");
      const frame = fmt.channels * 2;
      return { ...fmt, pcm: body.subarray(0, body.length - (body.length % frame)) };
    }
    off += 8 + size + (size % 2); // chunks are word-aligned
  }
  throw new Error("not a 16-bit PCM WAV: no data chunk");
}

/** Reads a 16-bit PCM WAV file. */
export async function readWav(path: string): Promise<Audio> {
  return parseWav(await readFile(path));
}

/** Splits `audio` into chunks of `chunkMs` (whole frames; the last may be shorter). */
export function chunks(audio: Audio, chunkMs = 20): Buffer[] {
  const frame = audio.channels * 2;
  const size = Math.max(frame, Math.floor((audio.sampleRateHertz * chunkMs) / 1000) * frame);
  const out: Buffer[] = [];
  for (let off = 0; off < audio.pcm.length; off += size) out.push(audio.pcm.subarray(off, off + size));
  return out;
}
