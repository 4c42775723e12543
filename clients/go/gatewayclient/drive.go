package gatewayclient

import (
	"context"
	"fmt"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"google.golang.org/grpc"
)

// DefaultMaxAudioChunkBytes is the largest audio request the API accepts (see DriveRequest.audio).
const DefaultMaxAudioChunkBytes = 65536

// LINEAR16 returns the AudioFormat of signed 16-bit little-endian PCM.
func LINEAR16(sampleRateHertz, channels int) *gatewayv1.AudioFormat {
	return &gatewayv1.AudioFormat{
		AudioEncoding:     gatewayv1.AudioEncoding_AUDIO_ENCODING_LINEAR16,
		SampleRateHertz:   int32(sampleRateHertz),
		AudioChannelCount: int32(channels),
	}
}

// DriveStream is an open Drive call whose config the server has accepted.
//
// Recv returns the events that follow `started` (speech_started, speech_ended,
// interrupted, go_away, ...) and, at the end, io.EOF (status OK) or the call's status
// error. As with any gRPC stream, one goroutine may send while another receives, but
// two goroutines must not send at once.
type DriveStream struct {
	gatewayv1.AvatarGateway_DriveClient
	// Started is the server's answer to the config.
	Started *gatewayv1.DriveStarted
}

// DriveOption changes the DriveConfig that Drive sends.
type DriveOption func(*gatewayv1.DriveConfig)

// WithPreempt ends a Drive stream already open on the session (it fails with ABORTED
// DRIVE_PREEMPTED) instead of failing with DRIVE_ALREADY_ACTIVE: for reconnecting.
func WithPreempt() DriveOption { return func(c *gatewayv1.DriveConfig) { c.Preempt = true } }

// Drive opens a Drive stream on session ("sessions/{id}"), sends the config first, as the
// protocol requires, and waits for the server's `started` answer. format may be nil for a
// text-only stream. The stream lives until ctx is done; cancel ctx to abandon it.
//
// A rejected config (unknown session, unsupported format, ...) is returned as the call's
// status error; use ErrorInfo to read its reason.
func Drive(ctx context.Context, client gatewayv1.AvatarGatewayClient, session string,
	format *gatewayv1.AudioFormat, opts ...DriveOption) (*DriveStream, error) {
	return DriveWithCallOptions(ctx, client, session, format, opts, nil)
}

// DriveWithCallOptions is Drive with gRPC call options (compression, per-call credentials).
func DriveWithCallOptions(ctx context.Context, client gatewayv1.AvatarGatewayClient, session string,
	format *gatewayv1.AudioFormat, opts []DriveOption, callOpts []grpc.CallOption) (*DriveStream, error) {
	config := &gatewayv1.DriveConfig{Session: session, AudioFormat: format}
	for _, o := range opts {
		o(config)
	}
	stream, err := client.Drive(ctx, callOpts...)
	if err != nil {
		return nil, err
	}
	req := &gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_Config{Config: config}}
	if err := stream.Send(req); err != nil {
		// Send reports io.EOF when the server already ended the call: Recv has the status.
		_, rerr := stream.Recv()
		if rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	started := first.GetStarted()
	if started == nil {
		return nil, fmt.Errorf("gatewayclient: first Drive response is %T, want started", first.GetResponse())
	}
	return &DriveStream{AvatarGateway_DriveClient: stream, Started: started}, nil
}

func (d *DriveStream) maxChunk() int {
	if n := int(d.Started.GetMaxAudioChunkBytes()); n > 0 {
		return n
	}
	return DefaultMaxAudioChunkBytes
}

// SendAudio sends PCM in the configured format, split into requests the server accepts.
// Send blocks while gRPC flow control holds the stream (the server reads audio no faster
// than the vendor takes it, plus a bounded buffer).
func (d *DriveStream) SendAudio(pcm []byte) error {
	max := d.maxChunk()
	for len(pcm) > 0 {
		n := min(len(pcm), max)
		if err := d.Send(&gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_Audio{Audio: pcm[:n]}}); err != nil {
			return err
		}
		pcm = pcm[n:]
	}
	return nil
}

// SendPaced sends audio at real time in chunks of chunk (20–100 ms is typical), as a
// live source (TTS, a microphone) would: chunk i leaves at start + i*chunk.
func (d *DriveStream) SendPaced(ctx context.Context, audio *Audio, chunk time.Duration) error {
	return Pace(ctx, audio, chunk, d.SendAudio)
}

// SendText sends text for the vendor's TTS; final=true ends the turn.
func (d *DriveStream) SendText(text string, final bool) error {
	return d.Send(&gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_Text{
		Text: &gatewayv1.TextInput{Text: text, Final: final}}})
}

// EndTurn marks the current turn complete: the server flushes it and tells the vendor.
func (d *DriveStream) EndTurn() error {
	return d.Send(&gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_EndTurn{EndTurn: &gatewayv1.EndTurn{}}})
}

// Interrupt barges in: the server drops queued audio and stops the avatar; it answers
// with an `interrupted` event.
func (d *DriveStream) Interrupt() error {
	return d.Send(&gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_Interrupt{Interrupt: &gatewayv1.Interrupt{}}})
}
