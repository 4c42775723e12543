import numpy as np
import pytest
from avatar.gateway.v1 import media_pb2

from core.audio import AudioConverter, FrameChunker, Pacer, validate_audio_format
from core.contract import PacingRule
from core.errors import GatewayError
from tests.conftest import tone

pytestmark = pytest.mark.unit


def fmt(
    enc: int = media_pb2.AUDIO_ENCODING_LINEAR16, rate: int = 16000, ch: int = 1
) -> media_pb2.AudioFormat:
    return media_pb2.AudioFormat(audio_encoding=enc, sample_rate_hertz=rate, audio_channel_count=ch)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("ch", [1, 2])
def test_accepted_formats(rate: int, ch: int) -> None:
    validate_audio_format(fmt(rate=rate, ch=ch))


@pytest.mark.parametrize(
    "bad",
    [
        fmt(rate=7999),
        fmt(rate=48001),
        fmt(rate=0),
        fmt(ch=0),
        fmt(ch=3),
        fmt(enc=media_pb2.AUDIO_ENCODING_UNSPECIFIED),
    ],
)
def test_rejected_formats(bad: media_pb2.AudioFormat) -> None:
    with pytest.raises(GatewayError) as err:
        validate_audio_format(bad)
    assert err.value.reason == "UNSUPPORTED_AUDIO_FORMAT"
    assert set(err.value.metadata) == {"audioEncoding", "sampleRateHertz", "audioChannelCount"}


def test_passthrough_keeps_bytes_and_carries_odd_bytes() -> None:
    pcm = tone(0.5)
    conv = AudioConverter(16000, 1, 16000)
    out = b""
    # Odd-sized chunks: the odd byte must be carried, never dropped.
    for i in range(0, len(pcm), 333):
        out += conv.convert(pcm[i : i + 333])
    assert out == pcm


def test_stateful_resampling_equals_one_shot_and_keeps_duration() -> None:
    pcm = tone(1.0, 16000)
    chunked = AudioConverter(16000, 1, 24000)
    pieces = [chunked.convert(pcm[i : i + 640]) for i in range(0, len(pcm), 640)]
    pieces.append(chunked.flush())
    streamed = b"".join(pieces)
    whole = AudioConverter(16000, 1, 24000)
    one_shot = whole.convert(pcm) + whole.flush()
    assert len(streamed) == len(one_shot)
    a = np.frombuffer(streamed, "<i2").astype(int)
    b = np.frombuffer(one_shot, "<i2").astype(int)
    assert np.max(np.abs(a - b)) <= 2  # float rounding only: chunk boundaries leave no clicks
    assert abs(len(streamed) / 2 / 24000 - 1.0) < 0.002


def test_stereo_is_averaged_to_mono() -> None:
    left = np.full(160, 1000, "<i2")
    right = np.full(160, 3000, "<i2")
    stereo = np.column_stack([left, right]).reshape(-1).tobytes()
    out = np.frombuffer(AudioConverter(16000, 2, 16000).convert(stereo), "<i2")
    assert out.shape == (160,) and set(out.tolist()) == {2000}


def test_half_stereo_frame_is_carried() -> None:
    conv = AudioConverter(16000, 2, 16000)
    stereo = np.arange(8, dtype="<i2").tobytes()  # 4 stereo frames
    assert len(conv.convert(stereo[:6])) == 2  # 1.5 frames in -> 1 frame out
    assert len(conv.convert(stereo[6:])) == 6  # the carried half completes


def test_chunker_frames_and_remainder() -> None:
    ch = FrameChunker(640)
    assert ch.push(b"\0" * 640) == [b"\0" * 640]
    assert ch.push(b"\1" * 1000) == [b"\1" * 640]
    assert ch.buffered_bytes == 360
    assert ch.flush() == b"\1" * 360 and ch.buffered_bytes == 0


def test_pacer_tencent_rule_burst_then_interval() -> None:
    rule = PacingRule(frame_ms=160, burst_frames=6, interval_ms=120)
    pacer = Pacer(rule)
    t0 = 1000.0
    pacer._updated = t0  # deterministic clock
    waits = [pacer.reserve(now=t0) for _ in range(9)]
    assert waits[:6] == [0.0] * 6
    assert waits[6:] == pytest.approx([0.12, 0.24, 0.36])


def test_pacer_sustained_rate_is_one_frame_per_interval() -> None:
    pacer = Pacer(PacingRule(frame_ms=160, burst_frames=6, interval_ms=120))
    now = 0.0
    pacer._updated = now
    sends = []
    for _ in range(50):
        now += pacer.reserve(now=now)
        sends.append(now)
    gaps = np.diff(sends[6:])
    assert np.allclose(gaps, 0.12)  # interval/duration = 120/160 = 0.75 (Tencent window)


def test_pacer_slow_producer_never_bursts_beyond_bucket() -> None:
    pacer = Pacer(PacingRule(frame_ms=20, burst_frames=5, interval_ms=20))
    pacer._updated = 0.0
    for _ in range(5):
        pacer.reserve(now=0.0)
    # Idle for 10 s: at most 5 frames go at once again, not 500.
    waits = [pacer.reserve(now=10.0) for _ in range(7)]
    assert waits[:5] == [0.0] * 5 and waits[5] > 0


def test_chunker_cuts_whole_frame_chunks_and_keeps_order_with_a_remainder() -> None:
    ch = FrameChunker(640)
    data = bytes(range(256)) * 25  # 6400 bytes: ten frames, no buffer needed
    assert ch.push(data) == [data[i : i + 640] for i in range(0, 6400, 640)]
    assert ch.buffered_bytes == 0
    assert ch.push(data[:100]) == []  # a remainder: later whole chunks go through the buffer
    frames = ch.push(data[100:1380])
    assert b"".join(frames) == data[:1280] and ch.buffered_bytes == 100


def test_pacer_available_and_take_match_reserve() -> None:
    """The fast path's check (available() >= n, then take(n)) releases exactly what n calls
    of reserve() would release without a wait, and leaves the bucket in the same state."""
    rule = PacingRule(frame_ms=160, burst_frames=6, interval_ms=128)
    fast, slow = Pacer(rule), Pacer(rule)
    fast._updated = slow._updated = 0.0
    now = 0.0
    for step in range(40):
        now += 0.16 if step % 3 else 0.05
        n = 1 + step % 3
        if fast.available(now=now) >= n:
            fast.take(n)
            assert [slow.reserve(now=now) for _ in range(n)] == [0.0] * n
        else:
            waits = [slow.reserve(now=now) for _ in range(n)]
            assert waits[-1] > 0
            for _ in range(n):  # the queue path: both take the same tokens
                fast.reserve(now=now)
        assert fast._tokens == pytest.approx(slow._tokens)
