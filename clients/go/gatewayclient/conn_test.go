package gatewayclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The fixed test certificates (tools/gen_test_certs.py): ca.pem signed server.pem
// (localhost, 127.0.0.1, ::1) and client.pem (URI SAN clientSPIFFE); other-ca.pem is unrelated.
const (
	clientSPIFFE = "spiffe://test.avatargateway.dev/tenant/acme"
)

func tlsFile(name string) string { return filepath.Join("..", "..", "testdata", "tls", name) }

func readTLSFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(tlsFile(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call is what the test server saw of one call.
type call struct {
	method        string
	authorization []string
	clientURIs    []string // URI SANs of the client certificate, if one was presented
	authority     []string
	traceparent   []string
	tracestate    []string
	baggage       []string
}

// testGateway implements ListVendors (unary) and Drive (streaming) and records each call.
type testGateway struct {
	gatewayv1.UnimplementedAvatarGatewayServer
	mu    sync.Mutex
	calls []call
}

func (g *testGateway) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	c := call{method: method, authorization: md.Get("authorization"), authority: md.Get(":authority"),
		traceparent: md.Get("traceparent"), tracestate: md.Get("tracestate"), baggage: md.Get("baggage")}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			for _, u := range info.State.PeerCertificates[0].URIs {
				c.clientURIs = append(c.clientURIs, u.String())
			}
		}
	}
	g.mu.Lock()
	g.calls = append(g.calls, c)
	g.mu.Unlock()
}

func (g *testGateway) seen() []call {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]call(nil), g.calls...)
}

func (g *testGateway) ListVendors(ctx context.Context, _ *gatewayv1.ListVendorsRequest) (*gatewayv1.ListVendorsResponse, error) {
	g.record(ctx, "ListVendors")
	return &gatewayv1.ListVendorsResponse{}, nil
}

func (g *testGateway) Drive(stream grpc.BidiStreamingServer[gatewayv1.DriveRequest, gatewayv1.DriveResponse]) error {
	g.record(stream.Context(), "Drive")
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	config := first.GetConfig()
	if config == nil {
		return status.Error(codes.InvalidArgument, "config first")
	}
	if err := stream.Send(&gatewayv1.DriveResponse{Response: &gatewayv1.DriveResponse_Started{
		Started: &gatewayv1.DriveStarted{Session: config.GetSession()}}}); err != nil {
		return err
	}
	for { // until the client half-closes
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

type serverMode int

const (
	plaintextServer serverMode = iota
	tlsServer                  // server certificate only
	mtlsServer                 // requires a client certificate signed by ca.pem
)

// startGateway serves a testGateway on a loopback port and returns its address.
func startGateway(t *testing.T, mode serverMode) (string, *testGateway) {
	t.Helper()
	var opts []grpc.ServerOption
	if mode != plaintextServer {
		cert, err := tls.LoadX509KeyPair(tlsFile("server.pem"), tlsFile("server-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		config := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if mode == mtlsServer {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(readTLSFile(t, "ca.pem")) {
				t.Fatal("ca.pem")
			}
			config.ClientCAs, config.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(config)))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	g := &testGateway{}
	gatewayv1.RegisterAvatarGatewayServer(srv, g)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), g
}

func dial(t *testing.T, target string, opts ...ConnOption) gatewayv1.AvatarGatewayClient {
	t.Helper()
	conn, err := NewConn(target, opts...)
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return gatewayv1.NewAvatarGatewayClient(conn)
}

const callTimeout = 5 * time.Second

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// unaryAndDrive makes one ListVendors call and one Drive stream (config, started,
// half-close, OK) and returns the first error.
func unaryAndDrive(t *testing.T, client gatewayv1.AvatarGatewayClient) error {
	t.Helper()
	return unaryAndDriveCtx(callCtx(t), t, client)
}

// unaryAndDriveCtx is unaryAndDrive with the calls' context.
func unaryAndDriveCtx(ctx context.Context, t *testing.T, client gatewayv1.AvatarGatewayClient) error {
	t.Helper()
	if _, err := client.ListVendors(ctx, &gatewayv1.ListVendorsRequest{}); err != nil {
		return err
	}
	drive, err := Drive(ctx, client, "sessions/s1", LINEAR16(16000, 1))
	if err != nil {
		return err
	}
	if drive.Started.GetSession() != "sessions/s1" {
		t.Fatalf("started %v", drive.Started)
	}
	if err := drive.CloseSend(); err != nil {
		return err
	}
	if _, err := drive.Recv(); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func wantCalls(t *testing.T, g *testGateway, authorization string) []call {
	t.Helper()
	calls := g.seen()
	if len(calls) != 2 || calls[0].method != "ListVendors" || calls[1].method != "Drive" {
		t.Fatalf("server saw %+v, want ListVendors then Drive", calls)
	}
	for _, c := range calls {
		var want []string
		if authorization != "" {
			want = []string{authorization}
		}
		if len(c.authorization) != len(want) || (len(want) == 1 && c.authorization[0] != want[0]) {
			t.Fatalf("%s: authorization %q, want %q", c.method, c.authorization, want)
		}
	}
	return calls
}

func TestNewConnTLSWithCustomCAAndCredential(t *testing.T) {
	addr, g := startGateway(t, tlsServer)
	client := dial(t, addr, WithCAFile(tlsFile("ca.pem")), WithCredential("ak_test.secret-1"))
	if err := unaryAndDrive(t, client); err != nil {
		t.Fatal(err)
	}
	for _, c := range wantCalls(t, g, "Bearer ak_test.secret-1") {
		if len(c.clientURIs) != 0 {
			t.Fatalf("%s: client certificate %v presented without WithClientCert*", c.method, c.clientURIs)
		}
	}
}

func TestNewConnCAPEMAndServerName(t *testing.T) {
	addr, g := startGateway(t, tlsServer)
	// The target names a host that is not in server.pem; the dialer connects to addr.
	_, port, _ := net.SplitHostPort(addr)
	target := "passthrough:///gateway.invalid:" + port
	toAddr := WithDialOptions(grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}))
	ca := WithCAPEM(readTLSFile(t, "ca.pem"))
	for name, serverName := range map[string]string{"no override": "", "a name not in the certificate": "gateway.example.com"} {
		t.Run(name, func(t *testing.T) {
			client := dial(t, target, ca, toAddr, WithServerName(serverName))
			if _, err := client.ListVendors(callCtx(t), &gatewayv1.ListVendorsRequest{}); status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want UNAVAILABLE (handshake)", err)
			}
		})
	}
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2ln"
	client := dial(t, target, ca, toAddr, WithServerName("localhost"), WithCredential(jwt))
	if err := unaryAndDrive(t, client); err != nil {
		t.Fatal(err)
	}
	for _, c := range wantCalls(t, g, "Bearer "+jwt) {
		if len(c.authority) != 1 || c.authority[0] != "localhost" {
			t.Fatalf("%s: :authority %q, want localhost", c.method, c.authority)
		}
	}
}

func TestNewConnUntrustedServerFails(t *testing.T) {
	addr, g := startGateway(t, tlsServer)
	for name, opts := range map[string][]ConnOption{
		"other CA":     {WithCAFile(tlsFile("other-ca.pem")), WithCredential("ak_test")},
		"system roots": {WithCredential("ak_test")}, // the default: the test CA is not a system root
	} {
		t.Run(name, func(t *testing.T) {
			client := dial(t, addr, opts...)
			_, err := client.ListVendors(callCtx(t), &gatewayv1.ListVendorsRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want UNAVAILABLE (handshake)", err)
			}
		})
	}
	if calls := g.seen(); len(calls) != 0 {
		t.Fatalf("server saw %+v through an untrusted handshake", calls)
	}
}

func TestNewConnDefaultIsTLS(t *testing.T) {
	addr, g := startGateway(t, plaintextServer)
	client := dial(t, addr, WithCAFile(tlsFile("ca.pem")))
	if _, err := client.ListVendors(callCtx(t), &gatewayv1.ListVendorsRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("TLS client to a plaintext server: %v, want UNAVAILABLE", err)
	}
	if calls := g.seen(); len(calls) != 0 {
		t.Fatalf("server saw %+v", calls)
	}
}

func TestNewConnMutualTLS(t *testing.T) {
	addr, g := startGateway(t, mtlsServer)
	for name, cert := range map[string]ConnOption{
		"files": WithClientCertFiles(tlsFile("client.pem"), tlsFile("client-key.pem")),
		"PEM":   WithClientCertPEM(readTLSFile(t, "client.pem"), readTLSFile(t, "client-key.pem")),
	} {
		t.Run(name, func(t *testing.T) {
			before := len(g.seen())
			client := dial(t, addr, WithCAFile(tlsFile("ca.pem")), cert, WithCredential("ak_mtls"))
			if err := unaryAndDrive(t, client); err != nil {
				t.Fatal(err)
			}
			calls := g.seen()[before:]
			if len(calls) != 2 {
				t.Fatalf("server saw %+v", calls)
			}
			for _, c := range calls {
				if len(c.clientURIs) != 1 || c.clientURIs[0] != clientSPIFFE {
					t.Fatalf("%s: client certificate URIs %v, want %s", c.method, c.clientURIs, clientSPIFFE)
				}
				if len(c.authorization) != 1 || c.authorization[0] != "Bearer ak_mtls" {
					t.Fatalf("%s: authorization %q", c.method, c.authorization)
				}
			}
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		before := len(g.seen())
		client := dial(t, addr, WithCAFile(tlsFile("ca.pem")))
		if _, err := client.ListVendors(callCtx(t), &gatewayv1.ListVendorsRequest{}); status.Code(err) == codes.OK {
			t.Fatal("a server that requires a client certificate accepted a call without one")
		}
		if calls := g.seen()[before:]; len(calls) != 0 {
			t.Fatalf("server saw %+v", calls)
		}
	})
}

func TestNewConnPlaintext(t *testing.T) {
	addr, g := startGateway(t, plaintextServer)
	_, err := NewConn(addr, WithInsecurePlaintext(), WithCredential("ak_test"))
	if !errors.Is(err, ErrCredentialOverPlaintext) {
		t.Fatalf("credential over plaintext: %v, want ErrCredentialOverPlaintext", err)
	}
	// Plaintext without a credential, as for the sandbox.
	if err := unaryAndDrive(t, dial(t, addr, WithInsecurePlaintext())); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, g, "")
	// With the second explicit option, the credential goes in clear, on every call.
	addr, g = startGateway(t, plaintextServer)
	client := dial(t, addr, WithInsecurePlaintext(), WithCredential("ak_sandbox"), WithCredentialOverPlaintext())
	if err := unaryAndDrive(t, client); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, g, "Bearer ak_sandbox")
}

func TestNewConnOptionErrors(t *testing.T) {
	garbage := []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
	for name, tc := range map[string]struct {
		opts []ConnOption
		is   error
	}{
		"missing CA file":        {opts: []ConnOption{WithCAFile(tlsFile("missing.pem"))}, is: fs.ErrNotExist},
		"CA file without a cert": {opts: []ConnOption{WithCAFile(tlsFile("client-key.pem"))}},
		"CA PEM without a cert":  {opts: []ConnOption{WithCAPEM(garbage)}},
		"missing client key":     {opts: []ConnOption{WithClientCertFiles(tlsFile("client.pem"), tlsFile("missing.pem"))}, is: fs.ErrNotExist},
		"mismatched client key":  {opts: []ConnOption{WithClientCertFiles(tlsFile("client.pem"), tlsFile("server-key.pem"))}},
		"empty credential":       {opts: []ConnOption{WithCredential("")}, is: ErrInvalidCredential},
		"credential with a newline": {
			opts: []ConnOption{WithCredential("ak\r\nx-admin: 1")}, is: ErrInvalidCredential},
		"plaintext with a CA": {
			opts: []ConnOption{WithInsecurePlaintext(), WithCAFile(tlsFile("ca.pem"))}, is: ErrTLSOptionWithPlaintext},
		"plaintext with a server name": {
			opts: []ConnOption{WithInsecurePlaintext(), WithServerName("localhost")}, is: ErrTLSOptionWithPlaintext},
		"plaintext with a client certificate": {
			opts: []ConnOption{WithInsecurePlaintext(), WithClientCertFiles(tlsFile("client.pem"), tlsFile("client-key.pem"))},
			is:   ErrTLSOptionWithPlaintext},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := NewConn("127.0.0.1:1", tc.opts...)
			if err == nil {
				_ = conn.Close()
				t.Fatal("NewConn succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err %v, want %v", err, tc.is)
			}
		})
	}
}
