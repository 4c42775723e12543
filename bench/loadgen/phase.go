package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// noWindowNs is the window before the harness sets one: [2^62, 2^62), empty.
const noWindowNs = int64(1) << 62

// window is the measurement window and stop time of a phase, replaced as a whole.
type window struct {
	startNs, endNs int64
	stopAt         float64 // seconds, like Phase.stop_at (compared with the float target)
}

// phase is the shared state of the streams of one "start" command.
type phase struct {
	g          *loadgen
	id         string
	path       string
	n          int
	firstSID   int64
	rampRate   float64
	tBeginNs   int64
	hardStopNs int64
	timeout    time.Duration // bounds each RPC / REST call of the phase

	win atomic.Pointer[window]

	ctx    context.Context
	cancel context.CancelFunc

	startedOrEarly atomic.Int64 // streams that sent chunk 0 + streams that ended before it
	waiting        atomic.Bool

	mu         sync.Mutex // guards lag and windowSent
	lag        []int64
	windowSent int64

	streams  []*stream
	running  sync.WaitGroup
	finished chan struct{} // closed when every stream has ended
}

// stream is one real-time audio stream. Its fields are written by its own goroutine and
// read after done is closed; taskID and sent are also readable meanwhile.
type stream struct {
	sid         int64
	taskID      atomic.Pointer[string]
	sent        atomic.Int64
	hasher      hash.Hash
	err         string
	driveStatus string
	kinds       *kindCounter // gateway streams only
	refused     string       // "CreateSession" or "Drive": refused past capacity
	refusedMs   float64      // how long the refusal took to come (ms)
	firstSent   bool
	done        chan struct{}
}

func (s *stream) setTaskID(id string) { s.taskID.Store(&id) }

func newPhase(g *loadgen, id, path string, n int, firstSID int64, rampRate float64,
	tBeginNs, hardStopNs int64, timeout time.Duration) *phase {
	p := &phase{
		g: g, id: id, path: path, n: n, firstSID: firstSID, rampRate: rampRate,
		tBeginNs: tBeginNs, hardStopNs: hardStopNs, timeout: timeout,
		finished: make(chan struct{}),
	}
	p.win.Store(&window{startNs: noWindowNs, endNs: noWindowNs, stopAt: math.Inf(1)})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.streams = make([]*stream, n)
	for i := range p.streams {
		s := &stream{sid: firstSID + int64(i), hasher: sha256.New(), done: make(chan struct{})}
		if path == "gateway" {
			s.kinds = &kindCounter{}
		}
		p.streams[i] = s
	}
	return p
}

// launch starts every stream at t_begin + i / ramp_rate.
func (p *phase) launch() {
	if p.n == 0 {
		p.g.out.emit(map[string]string{"event": "all_started", "phase": p.id})
		close(p.finished)
		return
	}
	p.running.Add(p.n)
	for i, s := range p.streams {
		at := p.tBeginNs
		if p.rampRate > 0 {
			at += int64(float64(i) / p.rampRate * 1e9)
		}
		go p.run(s, at)
	}
	go func() {
		p.running.Wait()
		close(p.finished)
	}()
}

func (p *phase) run(s *stream, atNs int64) {
	defer p.running.Done()
	defer close(s.done)
	defer func() {
		if !s.firstSent {
			p.markStarted() // ended before its first chunk: counts as finished early
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	if err := sleepNs(p.ctx, timer, atNs-monoNs()); err != nil {
		s.err = "cancelled before the stream started"
		return
	}
	if p.path == "gateway" {
		p.gatewayStream(s, timer)
	} else {
		p.directStream(s, timer)
	}
}

func (p *phase) markStarted() {
	if p.startedOrEarly.Add(1) == int64(p.n) {
		p.g.out.emit(map[string]string{"event": "all_started", "phase": p.id})
	}
}

// waitAll waits until every stream has ended, at most limit; then it cancels the rest and
// gives them a bounded time to record their error and clean up.
func (p *phase) waitAll(limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.finished:
		p.cancel()
		return
	case <-t.C:
	}
	log.Printf("phase %s: streams still running after %s; cancelling them", p.id, limit)
	p.cancel()
	// Time for the cancelled streams to record their error and run their cleanup call
	// (CloseSession / StopDigitalHumanStreamTask); run_bench waits timeout_s + 60 s in all.
	const grace = 45 * time.Second
	t.Reset(grace)
	select {
	case <-p.finished:
	case <-t.C:
		log.Printf("phase %s: streams still running %s after the cancel", p.id, grace)
	}
}

type streamReport struct {
	SID         int64          `json:"sid"`
	TaskID      string         `json:"task_id"`
	Sent        int64          `json:"sent"`
	SHA256      string         `json:"sha256"`
	Error       string         `json:"error"`
	DriveStatus string         `json:"drive_status"`
	Kinds       map[string]int `json:"kinds,omitzero"`
	Refused     string         `json:"refused,omitzero"`
	RefusedMs   float64        `json:"refused_ms,omitzero"`
}

type doneEvent struct {
	Event      string         `json:"event"`
	Phase      string         `json:"phase"`
	WindowSent int64          `json:"window_sent"`
	LagNs      []int64        `json:"lag_ns"`
	Streams    []streamReport `json:"streams"`
}

func (p *phase) report() doneEvent {
	p.mu.Lock()
	lag := append([]int64(nil), p.lag...)
	windowSent := p.windowSent
	p.mu.Unlock()
	if lag == nil {
		lag = []int64{}
	}
	ev := doneEvent{Event: "done", Phase: p.id, WindowSent: windowSent, LagNs: lag,
		Streams: make([]streamReport, 0, len(p.streams))}
	for _, s := range p.streams { // created in sid order
		r := streamReport{SID: s.sid, Sent: s.sent.Load()}
		if id := s.taskID.Load(); id != nil {
			r.TaskID = *id
		}
		select {
		case <-s.done:
			r.SHA256 = hex.EncodeToString(s.hasher.Sum(nil))
			r.Error = s.err
			r.DriveStatus = s.driveStatus
			r.Refused, r.RefusedMs = s.refused, s.refusedMs
			if s.kinds != nil {
				r.Kinds = s.kinds.counts()
			}
		default:
			r.Error = "stream did not end after the wait timeout and its cancellation"
			if s.kinds != nil {
				r.Kinds = map[string]int{}
			}
		}
		ev.Streams = append(ev.Streams, r)
	}
	return ev
}

// ---- pacing (run_bench.py pace) ---------------------------------------------------------

const goldenRatio = 0.6180339887498949

var errCancelled = errors.New("cancelled")

// sleepNs sleeps d ns on the stream's timer, or until ctx is done.
func sleepNs(ctx context.Context, t *time.Timer, d int64) error {
	if err := ctx.Err(); err != nil {
		return errCancelled
	}
	if d <= 0 {
		return nil
	}
	t.Reset(time.Duration(d))
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		t.Stop()
		return errCancelled
	}
}

// pace sends one client chunk every chunk-ms on the grid of run_bench.py pace() until the
// phase stops: the same float64 arithmetic in seconds, so the targets are the same to the
// ns. buf is the stream's client chunk, chunk-ms/20 chunks of 640 bytes (their tails
// already filled); each gets its header (the send time, seq k*per+j); send must not keep it.
func (p *phase) pace(ctx context.Context, s *stream, timer *time.Timer, buf []byte, send func([]byte) error) error {
	periodS := float64(p.g.chunkMs) / 1000
	per := int64(len(buf) / chunkBytes)
	t0, maxSends := schedule(s.sid, monoSeconds(), float64(p.hardStopNs)/1e9, periodS)
	sid := uint32(s.sid)
	for k := int64(0); k < maxSends; k++ {
		target := t0 + float64(k)*periodS
		if target >= p.win.Load().stopAt {
			break
		}
		if delay := target - monoSeconds(); delay > 0 {
			if err := sleepNs(ctx, timer, int64(delay*1e9)); err != nil {
				return err
			}
		}
		nowNs := monoNs()
		putHeaders(buf, nowNs, sid, k)
		if err := send(buf); err != nil {
			return err
		}
		s.hasher.Write(buf)
		s.sent.Add(per)
		if w := p.win.Load(); w.startNs <= nowNs && nowNs < w.endNs {
			lag := nowNs - targetNs(t0, k, periodS)
			p.mu.Lock()
			p.windowSent += per
			p.lag = append(p.lag, lag)
			p.mu.Unlock()
		}
		if k == 0 {
			s.firstSent = true
			p.markStarted()
		}
	}
	return nil
}

// schedule is the grid of pace(): the stream's first target t0 (s) and its send count.
// Streams are spread over the send period (periodS = chunk_ms / 1000) by a golden-ratio
// offset per sid.
func schedule(sid int64, now, hardStop, periodS float64) (t0 float64, maxSends int64) {
	offset := math.Mod(float64(sid)*goldenRatio, 1.0) * periodS
	t0 = math.Ceil((now-offset)/periodS)*periodS + offset
	return t0, int64((hardStop-t0)/periodS) + 1
}

// targetNs is int(target * 1e9) of send k.
func targetNs(t0 float64, k int64, periodS float64) int64 {
	return int64((t0 + float64(k)*periodS) * 1e9)
}

// putHeaders stamps the chunks of client chunk k (buf: len(buf)/640 chunks) with the send
// time and their seq k*per+j, as run_bench.py pace() joins make_chunk(now_ns, sid, k*per+j).
func putHeaders(buf []byte, nowNs int64, sid uint32, k int64) {
	per := int64(len(buf) / chunkBytes)
	for j := int64(0); j < per; j++ {
		putHeader(buf[j*chunkBytes:], nowNs, sid, uint32(k*per+j))
	}
}

// putHeader writes HEADER.pack("<qII", send_ns, sid, seq) into buf[0:16].
func putHeader(buf []byte, sendNs int64, sid, seq uint32) {
	_ = buf[15]
	v := uint64(sendNs)
	buf[0], buf[1], buf[2], buf[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	buf[4], buf[5], buf[6], buf[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
	buf[8], buf[9], buf[10], buf[11] = byte(sid), byte(sid>>8), byte(sid>>16), byte(sid>>24)
	buf[12], buf[13], buf[14], buf[15] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24)
}

// newChunk returns a stream's reusable client-chunk buffer (chunk-ms/20 chunks of 640
// bytes) with the fixed tails in place.
func (p *phase) newChunk() []byte {
	per := p.g.chunkMs / chunkMsDefault
	buf := make([]byte, per*chunkBytes)
	for j := 0; j < per; j++ {
		copy(buf[j*chunkBytes+headerBytes:(j+1)*chunkBytes], p.g.tail)
	}
	return buf
}

// kindCounter counts Drive responses by oneof field name, remembering first-seen order
// (for the Python-style dict in error messages).
type kindCounter struct {
	mu    sync.Mutex
	order []string
	n     map[string]int
}

func (k *kindCounter) add(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n == nil {
		k.n = map[string]int{}
	}
	if _, seen := k.n[name]; !seen {
		k.order = append(k.order, name)
	}
	k.n[name]++
}

func (k *kindCounter) get(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n[name]
}

func (k *kindCounter) counts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.n))
	for name, c := range k.n {
		out[name] = c
	}
	return out
}

// repr formats the counts like Python's repr of a dict: {'started': 1, 'warning': 2}.
func (k *kindCounter) repr() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := []byte{'{'}
	for i, name := range k.order {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "'%s': %d", name, k.n[name])
	}
	return string(append(b, '}'))
}
