package gatewayclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func wav(t *testing.T, rate, channels, bits int, pcm []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	w(uint32(36 + len(pcm)))
	b.WriteString("WAVEfmt ")
	w(uint32(16))
	w(uint16(1))
	w(uint16(channels))
	w(uint32(rate))
	w(uint32(rate * channels * bits / 8))
	w(uint16(channels * bits / 8))
	w(uint16(bits))
	b.WriteString("LIST")
	w(uint32(3))
	b.Write([]byte{1, 2, 3, 0}) // odd-sized chunk plus pad byte
	b.WriteString("data")
	w(uint32(len(pcm)))
	b.Write(pcm)
	return b.Bytes()
}

func TestParseWAV(t *testing.T) {
	pcm := make([]byte, 16000*2/10) // 100 ms at 16 kHz mono
	a, err := ParseWAV(wav(t, 16000, 1, 16, pcm))
	if err != nil {
		t.Fatal(err)
	}
	if a.SampleRateHertz != 16000 || a.Channels != 1 || len(a.PCM) != len(pcm) {
		t.Fatalf("got %d Hz, %d ch, %d bytes", a.SampleRateHertz, a.Channels, len(a.PCM))
	}
	if a.Duration() != 100*time.Millisecond {
		t.Fatalf("duration %v", a.Duration())
	}
	if _, err := ParseWAV(wav(t, 16000, 1, 8, pcm)); !errors.Is(err, ErrNotPCM16) {
		t.Fatalf("8-bit: err %v, want ErrNotPCM16", err)
	}
	if _, err := ParseWAV([]byte("nope")); !errors.Is(err, ErrNotPCM16) {
		t.Fatalf("garbage: err %v", err)
	}
}

func TestChunksAndPace(t *testing.T) {
	a := &Audio{PCM: make([]byte, 16000*2*3/10+2), SampleRateHertz: 16000, Channels: 1} // 300 ms + 1 sample
	chunks := a.Chunks(100 * time.Millisecond)
	if len(chunks) != 4 || len(chunks[0]) != 3200 || len(chunks[3]) != 2 {
		t.Fatalf("chunks: %d", len(chunks))
	}
	start := time.Now()
	var got int
	if err := Pace(context.Background(), a, 100*time.Millisecond, func(b []byte) error { got += len(b); return nil }); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 290*time.Millisecond || el > 2*time.Second {
		t.Fatalf("paced 300 ms of audio in %v", el)
	}
	if got != len(a.PCM) {
		t.Fatalf("sent %d of %d bytes", got, len(a.PCM))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Pace(ctx, a, 100*time.Millisecond, func([]byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pace: %v", err)
	}
}

func TestErrorInfo(t *testing.T) {
	st, err := status.New(codes.NotFound, "session sessions/x does not exist").WithDetails(&errdetails.ErrorInfo{
		Reason: "SESSION_NOT_FOUND", Domain: Domain, Metadata: map[string]string{"session": "sessions/x"}})
	if err != nil {
		t.Fatal(err)
	}
	info := ErrorInfo(st.Err())
	if info.GetReason() != "SESSION_NOT_FOUND" || info.GetMetadata()["session"] != "sessions/x" {
		t.Fatalf("got %v", info)
	}
	if ErrorInfo(errors.New("plain")) != nil || ErrorInfo(status.Error(codes.Internal, "x")) != nil {
		t.Fatal("ErrorInfo of an error without details must be nil")
	}
}
