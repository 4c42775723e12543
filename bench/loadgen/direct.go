package main

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // the ZEGO signature is MD5 by specification
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// zegoAPI is adapters/zegocloud/api.py ZegoApi without the gateway's rate limiter: signed
// POSTs with a JSON body, the {Code, Message, RequestId, Data} envelope, and the retries
// of idempotent calls (Backoff(base_s=0.1, cap_s=2.0, max_attempts=4), full jitter).
type zegoAPI struct {
	base   *url.URL
	appID  uint64
	secret string
	http   *http.Client
}

func newZegoAPI(base *url.URL, appID uint64, secret string) *zegoAPI {
	transport := &http.Transport{
		Proxy:               nil, // loopback emulator
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no global limit
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &zegoAPI{base: base, appID: appID, secret: secret, http: &http.Client{Transport: transport}}
}

// vendorError is a failed REST call; retryable as in the adapter's code table.
type vendorError struct {
	msg       string
	retryable bool
}

func (e *vendorError) Error() string { return e.msg }

// retryableCodes are the CODE_TABLE entries of adapters/zegocloud/api.py marked retryable.
var retryableCodes = map[int64]bool{100000015: true, 400010000: true, 400010002: true, 400010009: true}

// sign is md5_hex(str(AppId) + nonce + secret + str(Timestamp)).
func sign(appID uint64, nonce, secret string, ts int64) string {
	sum := md5.Sum([]byte(strconv.FormatUint(appID, 10) + nonce + secret + strconv.FormatInt(ts, 10))) //nolint:gosec
	return hex.EncodeToString(sum[:])
}

func (z *zegoAPI) callOnce(ctx context.Context, timeout time.Duration, action string, body []byte) (map[string]any, error) {
	var nonceBytes [8]byte
	if _, err := rand.Read(nonceBytes[:]); err != nil {
		return nil, err
	}
	nonce := hex.EncodeToString(nonceBytes[:]) // secrets.token_hex(8): 16 hex characters
	ts := time.Now().Unix()
	u := *z.base
	query := "Action=" + url.QueryEscape(action) +
		"&AppId=" + strconv.FormatUint(z.appID, 10) +
		"&SignatureNonce=" + nonce +
		"&Timestamp=" + strconv.FormatInt(ts, 10) +
		"&Signature=" + sign(z.appID, nonce, z.secret, ts) +
		"&SignatureVersion=2.0"
	if u.RawQuery != "" {
		query = u.RawQuery + "&" + query
	}
	u.RawQuery = query
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := z.http.Do(req)
	if err != nil {
		return nil, &vendorError{fmt.Sprintf("VendorError: %s: %v", action, err), true}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, &vendorError{fmt.Sprintf("VendorError: %s: reading the answer: %v", action, err), true}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &vendorError{fmt.Sprintf("VendorError: %s: HTTP %d", action, resp.StatusCode), true}
	}
	var envelope struct {
		Code    *json.Number    `json:"Code"`
		Message any             `json:"Message"`
		Data    json.RawMessage `json:"Data"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&envelope); err != nil || envelope.Code == nil {
		return nil, &vendorError{fmt.Sprintf("VendorError: %s: malformed response", action), true}
	}
	code, err := integer("Code", *envelope.Code)
	if err != nil {
		return nil, &vendorError{fmt.Sprintf("VendorError: %s: malformed response", action), true}
	}
	if code != 0 {
		msg := ""
		if envelope.Message != nil {
			msg = fmt.Sprint(envelope.Message)
		}
		return nil, &vendorError{fmt.Sprintf("VendorError: %s: Code %d: %s", action, code, msg), retryableCodes[code]}
	}
	data := map[string]any{}
	if len(envelope.Data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(envelope.Data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) == nil {
			if m, ok := v.(map[string]any); ok {
				data = m
			}
		}
	}
	return data, nil
}

// call is ZegoApi.call: one attempt, or up to 4 for idempotent calls on retryable errors.
func (z *zegoAPI) call(ctx context.Context, timeout time.Duration, action string, body map[string]any, idempotent bool) (map[string]any, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		data, err := z.callOnce(ctx, timeout, action, raw)
		if err == nil || !idempotent {
			return data, err
		}
		var ve *vendorError
		if !errors.As(err, &ve) || !ve.retryable || attempt+1 >= 4 {
			return nil, err
		}
		ceiling := min(2.0, 0.1*float64(int(1)<<attempt))
		t := time.NewTimer(time.Duration(mrand.Float64() * ceiling * float64(time.Second)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// str is Python's str() of a JSON value; ok is false when it is absent.
func str(m map[string]any, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	default:
		return fmt.Sprint(v), true
	}
}

// directStream is LoadGenerator.direct_stream: a task on the emulator's REST API, a
// DriveByWsStream socket, Start, the paced chunks as binary frames, Stop, a normal close,
// then StopDigitalHumanStreamTask.
func (p *phase) directStream(s *stream, timer *time.Timer) {
	z := p.g.zego
	taskID := ""
	defer func() {
		if taskID != "" { // even when the phase was cancelled: its own deadline only
			_, _ = z.call(context.Background(), p.timeout, "StopDigitalHumanStreamTask",
				map[string]any{"TaskId": taskID}, true)
		}
	}()
	err := func() error {
		sid := strconv.FormatInt(s.sid, 10)
		data, err := z.call(p.ctx, p.timeout, "CreateDigitalHumanStreamTask", map[string]any{
			"DigitalHumanConfig": map[string]any{"DigitalHumanId": p.g.avatar},
			"RTCConfig":          map[string]any{"RoomId": "bench-" + sid, "StreamId": "bench_" + sid},
			"TTL":                600,
			"MaxIdleTime":        300,
		}, false)
		if err != nil {
			return err
		}
		id, ok := str(data, "TaskId")
		if !ok {
			return errors.New("KeyError: 'TaskId'")
		}
		taskID = id
		s.setTaskID(id)
		streaming := false
		for range 200 {
			st, err := z.call(p.ctx, p.timeout, "GetDigitalHumanStreamTaskStatus", map[string]any{"TaskId": taskID}, true)
			if err != nil {
				return err
			}
			if v, ok := str(st, "Status"); ok {
				if n, err := integer("Status", json.Number(v)); err == nil && n == 3 {
					streaming = true
					break
				}
			}
			if err := sleepNs(p.ctx, timer, int64(50*time.Millisecond)); err != nil {
				return errors.New("CancelledError: the phase was cancelled (wait timeout)")
			}
		}
		if !streaming {
			return errors.New("RuntimeError: task did not start streaming")
		}
		drive, err := z.call(p.ctx, p.timeout, "DriveByWsStream", map[string]any{"TaskId": taskID}, false)
		if err != nil {
			return err
		}
		driveID, ok := str(drive, "DriveId")
		if !ok {
			return errors.New("KeyError: 'DriveId'")
		}
		address, ok := str(drive, "WssAddress")
		if !ok {
			return errors.New("KeyError: 'WssAddress'")
		}
		return p.wsDrive(s, timer, address, driveID)
	}()
	if err != nil {
		s.err = errText(err)
		return
	}
	s.driveStatus = "OK"
}

// wsDrive runs the drive socket: Start, the chunks, Stop, and a normal close.
func (p *phase) wsDrive(s *stream, timer *time.Timer, address, driveID string) error {
	dialCtx, cancel := context.WithTimeout(p.ctx, p.timeout)
	conn, resp, err := p.g.ws.DialContext(dialCtx, address, nil)
	cancel()
	if err != nil {
		if resp != nil {
			return fmt.Errorf("InvalidStatus: server rejected WebSocket connection: HTTP %d", resp.StatusCode)
		}
		return fmt.Errorf("WebSocketError: %v", err)
	}
	defer conn.Close()
	// Cancelling the phase closes the socket, which ends a blocked write.
	stop := context.AfterFunc(p.ctx, func() { conn.Close() })
	defer stop()

	// The reader consumes what the server sends (nothing but the closing handshake
	// normally); gorilla answers a server close frame from here.
	readerDone := make(chan error, 1)
	go func() {
		for {
			_, r, err := conn.NextReader()
			if err != nil {
				readerDone <- err
				return
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				readerDone <- err
				return
			}
		}
	}()
	// A failed write is reported with the close frame the server sent, if any.
	writeFailed := func(what string, err error) error {
		if p.ctx.Err() != nil {
			return errors.New("CancelledError: the phase was cancelled (wait timeout)")
		}
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case rerr := <-readerDone:
			var ce *websocket.CloseError
			if errors.As(rerr, &ce) {
				return fmt.Errorf("ConnectionClosedError: %s: received %d (%s)", what, ce.Code, ce.Text)
			}
		case <-t.C:
		}
		return fmt.Errorf("ConnectionClosedError: %s: %v", what, err)
	}

	id, _ := json.Marshal(driveID)
	start := `{"Action": "Start", "Payload": {"SampleRate": 16000, "Channel": 1, "DriveId": ` + string(id) + `}}`
	if err := conn.WriteMessage(websocket.TextMessage, []byte(start)); err != nil {
		return writeFailed("Start", err)
	}
	buf := p.newChunk()
	err = p.pace(p.ctx, s, timer, buf, func(chunk []byte) error {
		// One binary message per 640-byte chunk, however many a send carries (-chunk-ms).
		// WriteMessage copies the payload into the connection's buffer and masks it there.
		for i := 0; i < len(chunk); i += chunkBytes {
			if err := conn.WriteMessage(websocket.BinaryMessage, chunk[i:i+chunkBytes]); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errCancelled) {
		return errors.New("CancelledError: the phase was cancelled (wait timeout)")
	}
	if err != nil {
		return writeFailed("audio", err)
	}
	stopMsg := `{"Action": "Stop", "Payload": {"DriveId": ` + string(id) + `}}`
	if err := conn.WriteMessage(websocket.TextMessage, []byte(stopMsg)); err != nil {
		return writeFailed("Stop", err)
	}
	// The closing handshake (websockets' close(): code 1000, wait up to 10 s for the reply).
	deadline := time.Now().Add(10 * time.Second)
	if err := conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline); err != nil {
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil // the server closed first and gorilla already answered it
		}
		return writeFailed("close", err)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-readerDone:
	case <-t.C:
	}
	return nil
}
