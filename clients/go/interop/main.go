// Command interop is the Go driver of the cross-language interop suite
// (tests/interop): it reads one scenario as JSON on stdin, runs its steps against the
// gateway with the generated stubs and the gatewayclient helpers, and prints what it
// observes as JSON lines on stdout. The Python runner compares them to the scenario's
// expectations; this program asserts nothing itself.
//
// The connection comes from gatewayclient.NewConn: with the scenario's optional "tls"
// (ca_file, server_name, cert_file, key_file) it dials TLS, without it plaintext; an
// optional "credential" goes on every call as authorization: Bearer <credential> (over
// TLS only: with a credential and no tls, the driver exits with status 2).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"github.com/avatargateway/avatar-gateway/clients/go/gatewayclient"
	"google.golang.org/grpc/status"
)

type step struct {
	Op         string `json:"op"`
	Event      string `json:"event"`
	TurnID     string `json:"turn_id"`
	TimeoutMS  int    `json:"timeout_ms"`
	WAV        string `json:"wav"`
	Pace       *bool  `json:"pace"`
	ChunkMS    int    `json:"chunk_ms"`
	Text       string `json:"text"`
	Final      bool   `json:"final"`
	Name       string `json:"name"`
	Session    string `json:"session"`
	DeadlineMS int    `json:"deadline_ms"`
	Config     *bool  `json:"config"`
	MS         int    `json:"ms"`
	Vendor     string `json:"vendor"`
	AvatarID   string `json:"avatar_id"`
}

type scenario struct {
	Target   string `json:"target"`
	Vendor   string `json:"vendor"`
	AvatarID string `json:"avatar_id"`
	Steps    []step `json:"steps"`
	// TLS, when present, dials with TLS; absent, the driver dials plaintext.
	TLS *tlsOptions `json:"tls"`
	// Credential, when not empty, goes on every call as authorization: Bearer <credential>.
	Credential string `json:"credential"`
}

type tlsOptions struct {
	CAFile     string `json:"ca_file"`
	ServerName string `json:"server_name"`
	CertFile   string `json:"cert_file"`
	KeyFile    string `json:"key_file"`
}

// connOptions maps the scenario's tls and credential to gatewayclient.NewConn options. A
// credential without tls is refused by NewConn (ErrCredentialOverPlaintext).
func (sc scenario) connOptions() []gatewayclient.ConnOption {
	var opts []gatewayclient.ConnOption
	if t := sc.TLS; t != nil {
		if t.CAFile != "" {
			opts = append(opts, gatewayclient.WithCAFile(t.CAFile))
		}
		if t.ServerName != "" {
			opts = append(opts, gatewayclient.WithServerName(t.ServerName))
		}
		if t.CertFile != "" || t.KeyFile != "" {
			opts = append(opts, gatewayclient.WithClientCertFiles(t.CertFile, t.KeyFile))
		}
	} else {
		opts = append(opts, gatewayclient.WithInsecurePlaintext())
	}
	if sc.Credential != "" {
		opts = append(opts, gatewayclient.WithCredential(sc.Credential))
	}
	return opts
}

type driver struct {
	sc      scenario
	client  gatewayv1.AvatarGatewayClient
	outMu   sync.Mutex
	session string

	mu     sync.Mutex
	cond   *sync.Cond
	events []map[string]any
	ended  bool
	drive  *gatewayclient.DriveStream
	cancel context.CancelFunc
}

func (d *driver) emit(v map[string]any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func (d *driver) emitStatus(op string, err error) {
	line := map[string]any{"type": "status", "op": op, "code": 0, "message": ""}
	if err != nil && !errors.Is(err, io.EOF) {
		st := status.Convert(err)
		line["code"] = int(st.Code())
		line["message"] = st.Message()
		if info := gatewayclient.ErrorInfo(err); info != nil {
			md := info.GetMetadata()
			if md == nil {
				md = map[string]string{}
			}
			line["error_info"] = map[string]any{"reason": info.GetReason(), "domain": info.GetDomain(), "metadata": md}
		}
	}
	d.emit(line)
}

func eventLine(ev *gatewayv1.DriveResponse) map[string]any {
	line := map[string]any{"type": "event"}
	switch r := ev.GetResponse().(type) {
	case *gatewayv1.DriveResponse_Started:
		line["event"] = "started"
	case *gatewayv1.DriveResponse_SpeechStarted:
		line["event"], line["turn_id"] = "speech_started", r.SpeechStarted.GetTurnId()
	case *gatewayv1.DriveResponse_SpeechEnded:
		line["event"], line["turn_id"] = "speech_ended", r.SpeechEnded.GetTurnId()
		line["interrupted"] = r.SpeechEnded.GetInterrupted()
	case *gatewayv1.DriveResponse_Transcript:
		line["event"], line["turn_id"] = "transcript", r.Transcript.GetTurnId()
	case *gatewayv1.DriveResponse_Interrupted:
		line["event"], line["turn_id"] = "interrupted", r.Interrupted.GetTurnId()
	case *gatewayv1.DriveResponse_Warning:
		line["event"], line["turn_id"] = "warning", r.Warning.GetTurnId()
		line["reason"] = r.Warning.GetReason()
	case *gatewayv1.DriveResponse_TurnFailed:
		line["event"], line["turn_id"] = "turn_failed", r.TurnFailed.GetTurnId()
		line["reason"] = r.TurnFailed.GetReason()
	case *gatewayv1.DriveResponse_GoAway:
		line["event"] = "go_away"
	default:
		line["event"] = "unknown"
	}
	return line
}

func (d *driver) record(line map[string]any) {
	d.emit(line)
	d.mu.Lock()
	d.events = append(d.events, line)
	d.mu.Unlock()
	d.cond.Broadcast()
}

func (d *driver) finish(err error) {
	d.emitStatus("drive", err)
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	d.cond.Broadcast()
}

func (d *driver) reader() {
	for {
		ev, err := d.drive.Recv()
		if err != nil {
			d.finish(err)
			return
		}
		d.record(eventLine(ev))
	}
}

// waitFor blocks until pred holds or timeout passes (a timer wakes the condition).
func (d *driver) waitFor(timeout time.Duration, pred func() bool) bool {
	t := time.AfterFunc(timeout, d.cond.Broadcast)
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	d.mu.Lock()
	defer d.mu.Unlock()
	for !pred() {
		if time.Now().After(deadline) {
			return false
		}
		d.cond.Wait()
	}
	return true
}

func ms(v, def int) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * time.Millisecond
}

func (d *driver) unaryCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func (d *driver) run(s step) {
	switch s.Op {
	case "create_session":
		vendor, avatar := d.sc.Vendor, d.sc.AvatarID
		if s.Vendor != "" {
			vendor = s.Vendor
		}
		if s.AvatarID != "" {
			avatar = s.AvatarID
		}
		ctx, cancel := d.unaryCtx()
		defer cancel()
		sess, err := d.client.CreateSession(ctx, &gatewayv1.CreateSessionRequest{Vendor: vendor, AvatarId: avatar})
		if err == nil {
			d.session = sess.GetName()
			d.emit(map[string]any{"type": "session", "name": sess.GetName(), "state": sess.GetState().String()})
		}
		d.emitStatus("create_session", err)
	case "get_session", "close_session":
		name := s.Name
		if name == "" {
			name = d.session
		}
		ctx, cancel := d.unaryCtx()
		defer cancel()
		var err error
		if s.Op == "get_session" {
			_, err = d.client.GetSession(ctx, &gatewayv1.GetSessionRequest{Name: name})
		} else {
			_, err = d.client.CloseSession(ctx, &gatewayv1.CloseSessionRequest{Name: name})
		}
		d.emitStatus(s.Op, err)
	case "drive":
		session := s.Session
		if session == "" {
			session = d.session
		}
		ctx, cancel := context.WithCancel(context.Background())
		if s.DeadlineMS > 0 {
			ctx, cancel = context.WithTimeout(context.Background(), ms(s.DeadlineMS, 0))
		}
		d.cancel = cancel
		if s.Config != nil && !*s.Config { // a raw stream: the scenario sends what it likes first
			raw, err := d.client.Drive(ctx)
			if err != nil {
				d.finish(err)
				return
			}
			d.drive = &gatewayclient.DriveStream{AvatarGateway_DriveClient: raw}
		} else {
			ds, err := gatewayclient.Drive(ctx, d.client, session, gatewayclient.LINEAR16(16000, 1))
			if err != nil {
				d.finish(err)
				return
			}
			d.drive = ds
			d.record(eventLine(&gatewayv1.DriveResponse{Response: &gatewayv1.DriveResponse_Started{Started: ds.Started}}))
		}
		go d.reader()
	case "send_audio":
		audio, err := gatewayclient.ReadWAV(s.WAV)
		if err != nil {
			d.emit(map[string]any{"type": "error", "op": s.Op, "message": err.Error()})
			return
		}
		sent := 0
		send := func(b []byte) error {
			if err := d.drive.SendAudio(b); err != nil {
				return err
			}
			sent += len(b)
			return nil
		}
		chunk := ms(s.ChunkMS, 20)
		if s.Pace == nil || *s.Pace {
			err = gatewayclient.Pace(context.Background(), audio, chunk, send)
		} else {
			for _, c := range audio.Chunks(chunk) {
				if err = send(c); err != nil {
					break
				}
			}
		}
		line := map[string]any{"type": "sent", "op": s.Op, "bytes": sent}
		if err != nil {
			line["error"] = err.Error()
		}
		d.emit(line)
	case "send_text":
		d.sent(s.Op, d.drive.SendText(s.Text, s.Final))
	case "end_turn":
		d.sent(s.Op, d.drive.EndTurn())
	case "interrupt":
		d.sent(s.Op, d.drive.Interrupt())
	case "half_close":
		d.sent(s.Op, d.drive.CloseSend())
	case "cancel":
		if d.cancel != nil {
			d.cancel()
		}
		d.emit(map[string]any{"type": "sent", "op": s.Op})
	case "wait_event":
		ok := d.waitFor(ms(s.TimeoutMS, 15000), func() bool {
			for _, e := range d.events {
				if e["event"] == s.Event && (s.TurnID == "" || e["turn_id"] == s.TurnID) {
					return true
				}
			}
			return d.ended
		})
		if ok { // ended without the event is a failed wait
			ok = false
			d.mu.Lock()
			for _, e := range d.events {
				if e["event"] == s.Event && (s.TurnID == "" || e["turn_id"] == s.TurnID) {
					ok = true
				}
			}
			d.mu.Unlock()
		}
		d.emit(map[string]any{"type": "wait", "event": s.Event, "turn_id": s.TurnID, "ok": ok})
	case "wait_status":
		ok := d.waitFor(ms(s.TimeoutMS, 15000), func() bool { return d.ended })
		d.emit(map[string]any{"type": "wait", "event": "status", "ok": ok})
	case "sleep":
		time.Sleep(ms(s.MS, 0))
	case "mark":
		d.emit(map[string]any{"type": "mark", "name": s.Name})
	default:
		d.emit(map[string]any{"type": "error", "op": s.Op, "message": "unknown op"})
	}
}

func (d *driver) sent(op string, err error) {
	line := map[string]any{"type": "sent", "op": op}
	if err != nil {
		line["error"] = err.Error()
	}
	d.emit(line)
}

func main() {
	var sc scenario
	if err := json.NewDecoder(os.Stdin).Decode(&sc); err != nil {
		fmt.Fprintln(os.Stderr, "interop: bad scenario:", err)
		os.Exit(2)
	}
	conn, err := gatewayclient.NewConn(sc.Target, sc.connOptions()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(2)
	}
	defer conn.Close()
	d := &driver{sc: sc, client: gatewayv1.NewAvatarGatewayClient(conn)}
	d.cond = sync.NewCond(&d.mu)
	for _, s := range sc.Steps {
		d.run(s)
	}
	if d.cancel != nil {
		d.cancel()
	}
	d.emit(map[string]any{"type": "done"})
}
