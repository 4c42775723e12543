// Command loadgen is the native load generator of bench/run_bench.py for ZEGOCLOUD.
//
// It runs the same real-time audio streams as the Python generator of run_bench.py
// (LoadGenerator.direct_stream, LoadGenerator.gateway_stream and pace): one 640-byte
// chunk (20 ms of 16 kHz mono s16le) per stream every 20 ms on a CLOCK_MONOTONIC grid,
// each chunk being little-endian int64 send_ns | uint32 sid | uint32 seq followed by the
// 624 fixed bytes given with -tail-hex (bench/emulator_proc.py TAIL). The bytes on the
// wire and the schedule are those of the Python code, so the emulator's per-frame checks
// and per-drive SHA-256 apply unchanged; only the CPU cost per chunk is lower, which
// leaves the gateway the CPU it needs at 300 streams on a small machine.
//
// Two paths:
//
//   - gateway: CreateSession + one Drive per stream through the gateway (gRPC, plaintext),
//     audio chunks, end_turn, half-close, CloseSession;
//   - direct: the ZEGOCLOUD REST API of the emulator (signed POSTs), DriveByWsStream, and
//     the chunks as binary frames on the wss:// drive socket between Start and Stop.
//
// Usage:
//
//	loadgen -gateway HOST:PORT -zego-api URL -app-id N -secret S -avatar ID -tail-hex HEX [-grpc-channels 1] [-chunk-ms 20]
//
// -chunk-ms (a multiple of 20, run_bench.py --chunk-ms) is the audio of one client send: every
// chunk-ms a stream sends chunk-ms/20 chunks of 640 bytes, each with its own header (the
// send time, consecutive seq), as one DriveRequest (gateway) or as that many binary
// messages at once (direct).
//
// # Protocol
//
// The harness drives the generator with JSON lines on stdin; the generator answers with
// JSON lines on stdout (stdout carries only these events; logs go to stderr). All times
// are CLOCK_MONOTONIC nanoseconds, the clock of Python's time.monotonic_ns().
//
// Once the gRPC connections are dialed it prints
//
//	{"event":"ready"}
//
// Commands:
//
//	{"op":"start","phase":"ID","path":"gateway"|"direct","n":N,"first_sid":S,"ramp_rate":R,
//	 "t_begin_ns":T,"hard_stop_ns":H,"timeout_s":X}
//
// launches N streams with sids S..S+N-1; stream i starts at T + i/R s (R == 0: all at
// once). X bounds every RPC and REST call of the phase. When every stream has sent its
// first chunk or ended without sending one, the generator prints (once)
//
//	{"event":"all_started","phase":"ID"}
//
// Several phases may run at once (a gateway phase and its direct control streams).
//
//	{"op":"window","phase":"ID","win_start_ns":A,"win_end_ns":B,"stop_at_ns":C}
//
// sets the measurement window [A, B) and the time C at which streams stop sending (until
// then the window is [2^62, 2^62) and streams send until hard_stop). Chunks sent inside
// the window are counted, and their lag behind the schedule is recorded.
//
//	{"op":"wait","phase":"ID","timeout_s":X}
//
// waits (at most X s, then cancels the remaining streams, which record an error) until
// every stream of the phase has ended, then prints
//
//	{"event":"done","phase":"ID","window_sent":K,"lag_ns":[...],"streams":[{"sid":..,
//	 "task_id":"..","sent":..,"sha256":"..","error":"","drive_status":"OK",
//	 "kinds":{"started":1,...},"refused":"Drive","refused_ms":1.2},...]}
//
// with the streams in sid order ("kinds", the Drive responses by oneof field name, only
// for gateway streams; "refused" and "refused_ms" only for a call the gateway refused past
// its capacity, RESOURCE_EXHAUSTED, and how long that answer took). Waits run concurrently with other commands.
//
//	{"op":"quit"}
//
// (or EOF on stdin) lets pending waits print their result, cancels any phase left, closes
// the connections and exits 0. A bad command prints {"event":"error","message":"..."}
// and the generator carries on.
//
// The generator runs with GOMAXPROCS=1 and GOGC=400 unless those variables are set: it
// costs less CPU that way, and the CPU it leaves is what the bench measures the gateway
// with.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	chunkBytes     = 640 // 20 ms of 16 kHz mono s16le
	chunkMsDefault = 20  // CHUNK_MS: the audio of one chunk (ms)
	headerBytes    = 16  // int64 send_ns | uint32 sid | uint32 seq
	tailBytes      = chunkBytes - headerBytes
	sampleRate     = 16000
)

func main() {
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("loadgen: ")
	gatewayAddr := flag.String("gateway", "", "gateway gRPC address HOST:PORT (plaintext)")
	zegoURL := flag.String("zego-api", "", "ZEGOCLOUD REST base URL of the emulator (POST target)")
	appID := flag.Uint64("app-id", 0, "ZEGOCLOUD AppId")
	secret := flag.String("secret", "", "ZEGOCLOUD ServerSecret")
	avatar := flag.String("avatar", "", "DigitalHumanId / avatar_id")
	tailHex := flag.String("tail-hex", "", "the 624 bytes after the 16-byte header of every chunk, hex")
	channels := flag.Int("grpc-channels", 1, "gRPC connections to the gateway (stream sid uses sid % n)")
	chunkMs := flag.Int("chunk-ms", chunkMsDefault, "audio per client send (ms, a multiple of 20)")
	flag.Parse()

	tail, err := hex.DecodeString(*tailHex)
	if err != nil || len(tail) != tailBytes {
		log.Fatalf("-tail-hex must be %d bytes of hex (got %d bytes, err %v)", tailBytes, len(tail), err)
	}
	if *gatewayAddr == "" || *zegoURL == "" || *avatar == "" || *secret == "" {
		log.Fatal("-gateway, -zego-api, -secret and -avatar are required")
	}
	if *channels < 1 {
		log.Fatal("-grpc-channels must be >= 1")
	}
	if *chunkMs < chunkMsDefault || *chunkMs%chunkMsDefault != 0 || *chunkMs > 1000 {
		log.Fatal("-chunk-ms must be a multiple of 20 from 20 to 1000")
	}
	apiURL, err := url.Parse(*zegoURL)
	if err != nil || apiURL.Scheme == "" || apiURL.Host == "" {
		log.Fatalf("bad -zego-api %q: %v", *zegoURL, err)
	}

	// A light generator: one P avoids most cross-thread wake-ups between the streams, the
	// gRPC writer and the network poller (about 10 us instead of 14 us of CPU per gateway
	// chunk at 300 streams on 2 cores), and a larger GC target fewer collections of a heap
	// that stays small. The environment variables still win.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	g := &loadgen{
		out:     &output{w: bufio.NewWriterSize(os.Stdout, 1<<16)},
		avatar:  *avatar,
		tail:    tail,
		chunkMs: *chunkMs,
		phases:  map[string]*phase{},
		zego:    newZegoAPI(apiURL, *appID, *secret),
		// gorilla/websocket rather than coder/websocket: both are maintained (gorilla is
		// again since 2023 and has the longest record), but gorilla's writes are plain
		// synchronous calls into a per-connection buffer, masked in place, with no
		// per-message context/timer plumbing: the cheapest per-frame path for 300 streams.
		// Compression stays off (EnableCompression false): no permessage-deflate offer.
		ws: &websocket.Dialer{
			Proxy: nil,
			// websockets' open_timeout=10 in run_bench.
			HandshakeTimeout: 10 * time.Second,
			// The emulator's certificate is self-signed (run_bench: CERT_NONE).
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
		},
	}
	for i := 0; i < *channels; i++ {
		conn, err := grpc.NewClient(*gatewayAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatalf("grpc.NewClient(%s): %v", *gatewayAddr, err)
		}
		g.conns = append(g.conns, conn)
		g.clients = append(g.clients, gatewayv1.NewAvatarGatewayClient(conn))
	}
	g.connect(10 * time.Second)
	g.out.emit(map[string]string{"event": "ready"})

	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	for {
		line, err := in.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 && g.handle(line) {
			break
		}
		if err != nil {
			if err != io.EOF {
				log.Printf("stdin: %v", err)
			}
			break
		}
	}
	g.shutdown()
	os.Exit(0)
}

// output writes the JSON events, one per line, flushed at once.
type output struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *output) emit(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		log.Printf("cannot encode event: %v", err)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(data)
	o.w.WriteByte('\n')
	if err := o.w.Flush(); err != nil {
		log.Printf("stdout: %v", err)
	}
}

func (o *output) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Print(msg)
	o.emit(map[string]string{"event": "error", "message": msg})
}

type loadgen struct {
	out     *output
	conns   []*grpc.ClientConn
	clients []gatewayv1.AvatarGatewayClient
	zego    *zegoAPI
	ws      *websocket.Dialer
	avatar  string
	tail    []byte
	chunkMs int // audio per client send (ms): chunkMs/20 chunks per send

	mu     sync.Mutex
	phases map[string]*phase
	waits  sync.WaitGroup // running "wait" commands
}

// connect dials every gRPC connection and waits (bounded) until they are ready, so the
// first streams do not pay for the TCP and HTTP/2 set-up.
func (g *loadgen) connect(limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for i, conn := range g.conns {
		conn.Connect()
		for {
			state := conn.GetState()
			if state == connectivity.Ready {
				break
			}
			if !conn.WaitForStateChange(ctx, state) {
				log.Printf("gRPC connection %d not ready after %s (state %s); carrying on", i, limit, conn.GetState())
				break
			}
		}
	}
}

// command is one line of stdin. Numbers are kept as json.Number so that integers of
// any size and floats are both accepted.
type command struct {
	Op         string      `json:"op"`
	Phase      string      `json:"phase"`
	Path       string      `json:"path"`
	N          json.Number `json:"n"`
	FirstSID   json.Number `json:"first_sid"`
	RampRate   json.Number `json:"ramp_rate"`
	TBeginNs   json.Number `json:"t_begin_ns"`
	HardStopNs json.Number `json:"hard_stop_ns"`
	TimeoutS   json.Number `json:"timeout_s"`
	WinStartNs json.Number `json:"win_start_ns"`
	WinEndNs   json.Number `json:"win_end_ns"`
	StopAtNs   json.Number `json:"stop_at_ns"`
}

// integer reads a required integer field (an integral float such as 1.7e18 is accepted).
func integer(name string, n json.Number) (int64, error) {
	if n == "" {
		return 0, fmt.Errorf("missing %q", name)
	}
	if v, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return v, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != f || f >= 9.3e18 || f <= -9.3e18 {
		return 0, fmt.Errorf("%q is not an integer: %s", name, n)
	}
	return int64(f), nil
}

func number(name string, n json.Number) (float64, error) {
	if n == "" {
		return 0, fmt.Errorf("missing %q", name)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number: %s", name, n)
	}
	return f, nil
}

// handle runs one command; it returns true on quit.
func (g *loadgen) handle(line []byte) bool {
	var c command
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		g.out.errorf("bad command %q: %v", truncate(strings.TrimSpace(string(line)), 200), err)
		return false
	}
	var err error
	switch c.Op {
	case "start":
		err = g.start(&c)
	case "window":
		err = g.window(&c)
	case "wait":
		err = g.wait(&c)
	case "quit":
		return true
	default:
		err = fmt.Errorf("unknown op %q", c.Op)
	}
	if err != nil {
		g.out.errorf("%s: %v", c.Op, err)
	}
	return false
}

func (g *loadgen) start(c *command) error {
	if c.Phase == "" {
		return fmt.Errorf("missing \"phase\"")
	}
	if c.Path != "gateway" && c.Path != "direct" {
		return fmt.Errorf("path must be \"gateway\" or \"direct\", not %q", c.Path)
	}
	n, err := integer("n", c.N)
	if err != nil {
		return err
	}
	firstSID, err := integer("first_sid", c.FirstSID)
	if err != nil {
		return err
	}
	rampRate, err := number("ramp_rate", c.RampRate)
	if err != nil {
		return err
	}
	tBegin, err := integer("t_begin_ns", c.TBeginNs)
	if err != nil {
		return err
	}
	hardStop, err := integer("hard_stop_ns", c.HardStopNs)
	if err != nil {
		return err
	}
	timeoutS, err := number("timeout_s", c.TimeoutS)
	if err != nil {
		return err
	}
	switch {
	case n < 0 || n > 100000:
		return fmt.Errorf("n out of range: %d", n)
	case firstSID < 0 || firstSID+n > 1<<32:
		return fmt.Errorf("sids %d..%d do not fit the uint32 of the chunk header", firstSID, firstSID+n-1)
	case rampRate < 0 || rampRate != rampRate:
		return fmt.Errorf("ramp_rate must be >= 0")
	case !(timeoutS > 0) || timeoutS > 1e6:
		return fmt.Errorf("timeout_s must be > 0")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.phases[c.Phase]; dup {
		return fmt.Errorf("phase %q is already running", c.Phase)
	}
	p := newPhase(g, c.Phase, c.Path, int(n), firstSID, rampRate, tBegin, hardStop,
		time.Duration(timeoutS*float64(time.Second)))
	g.phases[c.Phase] = p
	p.launch()
	return nil
}

func (g *loadgen) lookup(id string) (*phase, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.phases[id]
	if p == nil {
		return nil, fmt.Errorf("unknown phase %q", id)
	}
	return p, nil
}

func (g *loadgen) window(c *command) error {
	p, err := g.lookup(c.Phase)
	if err != nil {
		return err
	}
	start, err := integer("win_start_ns", c.WinStartNs)
	if err != nil {
		return err
	}
	end, err := integer("win_end_ns", c.WinEndNs)
	if err != nil {
		return err
	}
	stopAt, err := integer("stop_at_ns", c.StopAtNs)
	if err != nil {
		return err
	}
	p.win.Store(&window{startNs: start, endNs: end, stopAt: float64(stopAt) / 1e9})
	return nil
}

func (g *loadgen) wait(c *command) error {
	p, err := g.lookup(c.Phase)
	if err != nil {
		return err
	}
	timeoutS, err := number("timeout_s", c.TimeoutS)
	if err != nil {
		return err
	}
	if timeoutS < 0 || timeoutS != timeoutS {
		return fmt.Errorf("timeout_s must be >= 0")
	}
	if !p.waiting.CompareAndSwap(false, true) {
		return fmt.Errorf("phase %q is already being waited for", c.Phase)
	}
	g.waits.Add(1)
	go func() {
		defer g.waits.Done()
		p.waitAll(time.Duration(timeoutS * float64(time.Second)))
		g.out.emit(p.report())
		g.mu.Lock()
		delete(g.phases, p.id)
		g.mu.Unlock()
	}()
	return nil
}

// shutdown lets running waits print their results, cancels the phases nobody waits for,
// and closes the connections.
func (g *loadgen) shutdown() {
	g.waits.Wait()
	g.mu.Lock()
	left := make([]*phase, 0, len(g.phases))
	for _, p := range g.phases {
		left = append(left, p)
	}
	g.mu.Unlock()
	for _, p := range left {
		p.cancel()
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
wait:
	for _, p := range left {
		select {
		case <-p.finished:
		case <-deadline.C:
			log.Printf("phase %s: streams still running at exit", p.id)
			break wait
		}
	}
	for _, conn := range g.conns {
		conn.Close()
	}
	g.zego.http.CloseIdleConnections()
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// errText is the error of a stream as the bench reports it (at most 200 bytes).
func errText(err error) string {
	return truncate(err.Error(), 200)
}
