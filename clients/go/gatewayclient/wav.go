package gatewayclient

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
)

// Audio is 16-bit little-endian PCM (LINEAR16), channels interleaved.
type Audio struct {
	PCM             []byte
	SampleRateHertz int
	Channels        int
}

// Format is the AudioFormat to put in the DriveConfig for this audio.
func (a *Audio) Format() *gatewayv1.AudioFormat { return LINEAR16(a.SampleRateHertz, a.Channels) }

// BytesPerSecond of this audio.
func (a *Audio) BytesPerSecond() int { return a.SampleRateHertz * a.Channels * 2 }

// Duration of this audio.
func (a *Audio) Duration() time.Duration {
	return time.Duration(int64(len(a.PCM)) * int64(time.Second) / int64(a.BytesPerSecond()))
}

// Chunks splits the audio into pieces of chunk duration (whole frames; the last may be
// shorter). The pieces share memory with a.PCM.
func (a *Audio) Chunks(chunk time.Duration) [][]byte {
	frame := a.Channels * 2
	n := int(int64(a.SampleRateHertz)*int64(chunk)/int64(time.Second)) * frame
	if n < frame {
		n = frame
	}
	var out [][]byte
	for pcm := a.PCM; len(pcm) > 0; {
		k := min(n, len(pcm))
		out = append(out, pcm[:k])
		pcm = pcm[k:]
	}
	return out
}

// ReadWAV reads a 16-bit PCM WAV file.
func ReadWAV(path string) (*Audio, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	a, err := ParseWAV(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// ErrNotPCM16 is returned for WAV files that are not 16-bit integer PCM.
var ErrNotPCM16 = errors.New("not a 16-bit PCM WAV")

// ParseWAV parses a RIFF/WAVE file holding 16-bit integer PCM (WAVE_FORMAT_PCM, or
// WAVE_FORMAT_EXTENSIBLE with the PCM sub-format).
func ParseWAV(data []byte) (*Audio, error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: no RIFF/WAVE header", ErrNotPCM16)
	}
	r := bytes.NewReader(data[12:])
	var a *Audio
	for {
		var hdr struct {
			ID   [4]byte
			Size uint32
		}
		if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("%w: truncated chunk header", ErrNotPCM16)
		}
		size := int64(hdr.Size)
		body := make([]byte, min(size, int64(r.Len())))
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		if size%2 == 1 && r.Len() > 0 { // chunks are word-aligned
			_, _ = r.ReadByte()
		}
		switch string(hdr.ID[:]) {
		case "fmt ":
			if len(body) < 16 {
				return nil, fmt.Errorf("%w: short fmt chunk", ErrNotPCM16)
			}
			tag := binary.LittleEndian.Uint16(body[0:2])
			channels := int(binary.LittleEndian.Uint16(body[2:4]))
			rate := int(binary.LittleEndian.Uint32(body[4:8]))
			bits := binary.LittleEndian.Uint16(body[14:16])
			if tag == 0xFFFE && len(body) >= 26 { // WAVE_FORMAT_EXTENSIBLE: sub-format GUID
				tag = binary.LittleEndian.Uint16(body[24:26])
			}
			if tag != 1 || bits != 16 || channels < 1 {
				return nil, fmt.Errorf("%w: format tag %d, %d bits, %d channels", ErrNotPCM16, tag, bits, channels)
			}
			a = &Audio{SampleRateHertz: rate, Channels: channels}
		case "data":
			if a == nil {
				return nil, fmt.Errorf("%w: data before fmt", ErrNotPCM16)
			}
			frame := a.Channels * 2
			a.PCM = body[:len(body)/frame*frame]
			return a, nil
		}
	}
	return nil, fmt.Errorf("%w: no data chunk", ErrNotPCM16)
}
