package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
)

// codeNames are the status code names as Python's grpc.StatusCode spells them.
var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// rpcError describes a failed call like the Python bench's AioRpcError text.
func rpcError(what string, err error) error {
	st := status.Convert(err)
	return fmt.Errorf("AioRpcError: %s: status = StatusCode.%s, details = %q", what, codeName(st.Code()), st.Message())
}

// responseOneof is DriveResponse's oneof "response", to name each response's kind.
var responseOneof = (&gatewayv1.DriveResponse{}).ProtoReflect().Descriptor().Oneofs().ByName("response")

// kindOf is the Python bench's str(response.WhichOneof("response")).
func kindOf(r *gatewayv1.DriveResponse) string {
	if fd := r.ProtoReflect().WhichOneof(responseOneof); fd != nil {
		return string(fd.Name())
	}
	return "None"
}

// refusedBy records a call the gateway refused past its capacity (RESOURCE_EXHAUSTED, the
// admission control's GATEWAY_OVERLOADED): the method and how long the answer took. Such a
// stream is refused, not failed. False for any other error.
func (s *stream) refusedBy(method string, err error, asked time.Time) bool {
	if status.Code(err) != codes.ResourceExhausted {
		return false
	}
	s.refused = method
	s.refusedMs = float64(time.Since(asked).Nanoseconds()) / 1e6
	return true
}

// gatewayStream is LoadGenerator.gateway_stream: CreateSession, one Drive with the paced
// chunks, end_turn, half-close, then CloseSession.
func (p *phase) gatewayStream(s *stream, timer *time.Timer) {
	g := p.g
	client := g.clients[s.sid%int64(len(g.clients))]
	cctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	asked := time.Now()
	session, err := client.CreateSession(cctx, &gatewayv1.CreateSessionRequest{
		Vendor: "zegocloud", AvatarId: g.avatar,
	})
	cancel()
	if err != nil {
		if !s.refusedBy("CreateSession", err, asked) {
			s.err = errText(rpcError("CreateSession", err))
		}
		return
	}
	defer func() {
		// Always, and even when the phase was cancelled (its own deadline only).
		cctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		defer cancel()
		_, _ = client.CloseSession(cctx, &gatewayv1.CloseSessionRequest{Name: session.GetName()})
	}()
	s.setTaskID(session.GetVendorSessionId())
	if session.GetState() != gatewayv1.SessionState_SESSION_STATE_READY {
		s.err = errText(fmt.Errorf("RuntimeError: session state %s", session.GetState()))
		return
	}
	if err := p.drive(client, session.GetName(), s, timer); err != nil {
		s.err = errText(err)
	}
}

func (p *phase) drive(client gatewayv1.AvatarGatewayClient, session string, s *stream, timer *time.Timer) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	asked := time.Now()
	call, err := client.Drive(ctx)
	if err != nil {
		return rpcError("Drive", err)
	}
	config := &gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_Config{Config: &gatewayv1.DriveConfig{
		Session: session,
		AudioFormat: &gatewayv1.AudioFormat{
			AudioEncoding:     gatewayv1.AudioEncoding_AUDIO_ENCODING_LINEAR16,
			SampleRateHertz:   sampleRate,
			AudioChannelCount: 1,
		},
	}}}
	if err := call.Send(config); err != nil {
		if errors.Is(err, io.EOF) { // the call ended: Recv has its status
			_, err = call.Recv()
		}
		if s.refusedBy("Drive", err, asked) {
			return nil
		}
		return rpcError("Drive config", err)
	}
	first, err := call.Recv()
	if errors.Is(err, io.EOF) {
		return errors.New("RuntimeError: no started response: <EOF>")
	}
	if err != nil {
		if s.refusedBy("Drive", err, asked) {
			return nil
		}
		return rpcError("Drive", err)
	}
	started := first.GetStarted()
	if started == nil {
		return fmt.Errorf("RuntimeError: no started response: %s", prototext.Format(first))
	}
	if started.GetVendorAudioFormat().GetSampleRateHertz() != sampleRate {
		return errors.New("RuntimeError: the gateway would resample: bench expects 16 kHz passthrough")
	}
	s.kinds.add(kindOf(first))

	readerDone := make(chan error, 1)
	go func() {
		for {
			r, err := call.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readerDone <- err
				return
			}
			s.kinds.add(kindOf(r))
		}
	}()
	// waitReader is the Python's wait_for(reader, 60): the call's final status.
	waitReader := func() (ok bool, final error) {
		t := time.NewTimer(60 * time.Second)
		defer t.Stop()
		select {
		case err := <-readerDone:
			return true, err
		case <-t.C:
			cancel()
			return false, nil
		}
	}
	// A failed Send (io.EOF: the call ended) is reported with the call's status.
	sendFailed := func(what string, err error) error {
		if errors.Is(err, io.EOF) {
			if ok, rerr := waitReader(); ok {
				st := status.Convert(rerr)
				return fmt.Errorf("%s failed: Drive ended %s: %s", what, codeName(st.Code()), st.Message())
			}
		}
		return rpcError(what, err)
	}

	// The request and its Audio wrapper are reused for every chunk, and so is buf: grpc-go's
	// SendMsg serializes the message before it returns (the retry buffer keeps the encoded
	// bytes, not the message); only stats handlers or tracing could read it later, and none
	// is installed here.
	audio := &gatewayv1.DriveRequest_Audio{}
	request := &gatewayv1.DriveRequest{Request: audio}
	buf := p.newChunk()
	err = p.pace(ctx, s, timer, buf, func(chunk []byte) error {
		audio.Audio = chunk
		return call.Send(request)
	})
	if errors.Is(err, errCancelled) {
		return errors.New("CancelledError: the phase was cancelled (wait timeout)")
	}
	if err != nil {
		return sendFailed("audio", err)
	}
	endTurn := &gatewayv1.DriveRequest{Request: &gatewayv1.DriveRequest_EndTurn{EndTurn: &gatewayv1.EndTurn{}}}
	if err := call.Send(endTurn); err != nil {
		return sendFailed("end_turn", err)
	}
	if err := call.CloseSend(); err != nil {
		return rpcError("done_writing", err)
	}
	ok, rerr := waitReader()
	if !ok {
		return errors.New("TimeoutError: the Drive responses did not end within 60 s")
	}
	st := status.Convert(rerr)
	s.driveStatus = codeName(st.Code())
	if st.Code() != codes.OK {
		return fmt.Errorf("Drive ended %s: %s", s.driveStatus, st.Message())
	}
	if s.kinds.get("speech_ended") != 1 {
		return fmt.Errorf("Drive OK but responses were %s", s.kinds.repr())
	}
	return nil
}
