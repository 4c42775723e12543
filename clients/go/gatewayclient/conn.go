package gatewayclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrCredentialOverPlaintext is returned by NewConn for WithCredential together with
// WithInsecurePlaintext but without WithCredentialOverPlaintext: the credential would
// travel in clear text.
var ErrCredentialOverPlaintext = errors.New("gatewayclient: refusing to send a credential over plaintext (TLS is off); use TLS, or WithCredentialOverPlaintext for a local sandbox")

// ErrTLSOptionWithPlaintext is returned by NewConn when WithInsecurePlaintext is combined
// with an option that only applies to TLS (WithCAFile, WithCAPEM, WithClientCertFiles,
// WithClientCertPEM, WithServerName): the caller asked for both.
var ErrTLSOptionWithPlaintext = errors.New("gatewayclient: a TLS option was given together with WithInsecurePlaintext")

// ErrInvalidCredential is returned by NewConn for an empty credential, or one with a
// character that a gRPC metadata value cannot carry (outside printable ASCII).
var ErrInvalidCredential = errors.New("gatewayclient: invalid credential")

// ConnOption configures NewConn.
type ConnOption func(*connConfig)

type connConfig struct {
	caPEM       [][]byte
	caFiles     []string
	certPEM     []byte
	keyPEM      []byte
	certFile    string
	keyFile     string
	clientCert  bool // a client certificate option was given
	serverName  string
	credential  *string
	plaintext   bool
	allowClear  bool
	noTelemetry bool
	dialOptions []grpc.DialOption
}

// WithCAFile trusts the CA certificates in the PEM file at path instead of the system
// roots (for a gateway whose certificate a private CA signed). It may be given more than
// once, and combined with WithCAPEM: the server's certificate must chain to one of them.
// NewConn returns the error of reading the file, or an error when it holds no certificate.
func WithCAFile(path string) ConnOption {
	return func(c *connConfig) { c.caFiles = append(c.caFiles, path) }
}

// WithCAPEM is WithCAFile with the PEM bytes themselves.
func WithCAPEM(pem []byte) ConnOption {
	return func(c *connConfig) { c.caPEM = append(c.caPEM, pem) }
}

// WithClientCertFiles presents the certificate in certFile (PEM, optionally followed by
// its intermediates) with the private key in keyFile (PEM) during the TLS handshake, for
// a gateway that requires mutual TLS. NewConn returns the error of reading either file,
// or of a certificate and key that do not form a pair.
func WithClientCertFiles(certFile, keyFile string) ConnOption {
	return func(c *connConfig) {
		c.certFile, c.keyFile, c.certPEM, c.keyPEM, c.clientCert = certFile, keyFile, nil, nil, true
	}
}

// WithClientCertPEM is WithClientCertFiles with the PEM bytes themselves.
func WithClientCertPEM(certPEM, keyPEM []byte) ConnOption {
	return func(c *connConfig) {
		c.certPEM, c.keyPEM, c.certFile, c.keyFile, c.clientCert = certPEM, keyPEM, "", "", true
	}
}

// WithServerName checks the server's certificate against name instead of the host of
// the target, and sends name as the TLS server name (SNI); grpc-go also uses it as the
// :authority of every call. For example, "localhost" when dialing 127.0.0.1:50051, or the
// gateway's public name when dialing one replica by address.
func WithServerName(name string) ConnOption {
	return func(c *connConfig) { c.serverName = name }
}

// WithCredential sends credential, a tenant API key or a JWT (without a "Bearer " prefix),
// as the metadata "authorization: Bearer <credential>" on every call of the connection,
// unary and streaming (the gateway answers UNAUTHENTICATED without it). It is attached
// through grpc-go's credentials.PerRPCCredentials, which refuses to send it on a
// connection without transport security. NewConn returns ErrInvalidCredential for an
// empty credential, and ErrCredentialOverPlaintext with WithInsecurePlaintext unless
// WithCredentialOverPlaintext is given too.
func WithCredential(credential string) ConnOption {
	return func(c *connConfig) { c.credential = &credential }
}

// WithInsecurePlaintext turns TLS off: calls travel unencrypted and the server is not
// authenticated. Only for a local sandbox gateway (avatar-gateway serve --sandbox) or
// development on one machine. NewConn returns ErrTLSOptionWithPlaintext if a TLS option is
// given too.
func WithInsecurePlaintext() ConnOption {
	return func(c *connConfig) { c.plaintext = true }
}

// WithCredentialOverPlaintext lets WithCredential work with WithInsecurePlaintext. Without
// TLS, anyone on the path can read the credential and reuse it until it is revoked or
// expires, so this is for a local sandbox only (a gateway on the same machine, with a test
// key): never for a real API key or token. It changes nothing when TLS is on.
func WithCredentialOverPlaintext() ConnOption {
	return func(c *connConfig) { c.allowClear = true }
}

// WithDialOptions passes more grpc-go options to grpc.NewClient (interceptors, keepalive,
// message size limits, ...). They are applied before the helper's own, so they cannot
// replace the transport credentials that NewConn sets. Do not add per-call credentials
// that set authorization: use WithCredential.
func WithDialOptions(opts ...grpc.DialOption) ConnOption {
	return func(c *connConfig) { c.dialOptions = append(c.dialOptions, opts...) }
}

// NewConn returns a client connection to the gateway at target ("host:port", or any
// target grpc.NewClient accepts), for gatewayv1.NewAvatarGatewayClient and the helpers in
// this package. Like grpc.NewClient, it does not connect: the first call does, and a
// failed TLS handshake (an untrusted or mismatched server certificate, a client
// certificate the server rejects) fails that call with UNAVAILABLE.
//
// By default, the connection uses TLS (1.2 or later), trusting the system roots, with no
// client certificate and no credential. WithCAFile/WithCAPEM trust a private CA instead,
// WithClientCertFiles/WithClientCertPEM add mutual TLS, WithServerName overrides the
// name checked against the server's certificate, WithCredential authenticates every call.
// WithInsecurePlaintext turns TLS off (local sandbox only).
//
// Every call carries the caller's OpenTelemetry trace context, so that the gateway's spans
// join the caller's trace: the connection has the otelgrpc client stats handler, which
// starts a client span for each call (unary and streaming) with the global tracer provider,
// as a child of the span in the call's context, and sends its context as the W3C Trace
// Context metadata traceparent and tracestate, plus the fields of the global propagator
// (otel.SetTextMapPropagator), if the application set one. It also records the otelgrpc
// client metrics with the global meter provider. Without OpenTelemetry set up and without a
// span in the call's context, nothing is sent. WithoutOpenTelemetry turns this off.
//
// NewConn returns an error, and no connection, for an option it cannot apply: a CA or
// client certificate file it cannot read (the *fs.PathError), PEM without a certificate,
// a certificate and key that do not match, ErrInvalidCredential, ErrTLSOptionWithPlaintext,
// ErrCredentialOverPlaintext, or the error of grpc.NewClient (an unparsable target).
//
//	conn, err := gatewayclient.NewConn("gateway.example.com:443",
//		gatewayclient.WithCAFile("ca.pem"),
//		gatewayclient.WithCredential(os.Getenv("AVATAR_GATEWAY_CREDENTIAL")))
//	if err != nil { ... }
//	defer conn.Close()
//	client := gatewayv1.NewAvatarGatewayClient(conn)
func NewConn(target string, opts ...ConnOption) (*grpc.ClientConn, error) {
	var c connConfig
	for _, o := range opts {
		o(&c)
	}
	if c.credential != nil {
		if err := checkCredential(*c.credential); err != nil {
			return nil, err
		}
	}
	var creds credentials.TransportCredentials
	if c.plaintext {
		if len(c.caFiles) > 0 || len(c.caPEM) > 0 || c.clientCert || c.serverName != "" {
			return nil, ErrTLSOptionWithPlaintext
		}
		if c.credential != nil && !c.allowClear {
			return nil, ErrCredentialOverPlaintext
		}
		creds = insecure.NewCredentials()
	} else {
		config, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(config)
	}
	dialOpts := append([]grpc.DialOption{}, c.dialOptions...)
	dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
	if c.credential != nil {
		// Unless plaintext is allowed explicitly, grpc-go also refuses to send it on a
		// connection without transport security (a second guard).
		requireTLS := !(c.plaintext && c.allowClear)
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer{credential: *c.credential, requireTLS: requireTLS}))
	}
	if !c.noTelemetry {
		dialOpts = append(dialOpts, grpc.WithStatsHandler(newTelemetryHandler()))
	}
	return grpc.NewClient(target, dialOpts...)
}

func (c *connConfig) tlsConfig() (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName}
	if len(c.caFiles) > 0 || len(c.caPEM) > 0 {
		pool := x509.NewCertPool()
		for _, path := range c.caFiles {
			pem, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("gatewayclient: CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("gatewayclient: CA file %s holds no PEM certificate", path)
			}
		}
		for _, pem := range c.caPEM {
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("gatewayclient: CA PEM holds no certificate")
			}
		}
		config.RootCAs = pool
	}
	if c.clientCert {
		var cert tls.Certificate
		var err error
		if c.certPEM != nil || c.keyPEM != nil {
			cert, err = tls.X509KeyPair(c.certPEM, c.keyPEM)
		} else {
			cert, err = tls.LoadX509KeyPair(c.certFile, c.keyFile)
		}
		if err != nil {
			return nil, fmt.Errorf("gatewayclient: client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return config, nil
}

// checkCredential accepts a non-empty credential of printable ASCII, what an ASCII gRPC
// metadata value can carry.
func checkCredential(credential string) error {
	if credential == "" {
		return fmt.Errorf("%w: empty", ErrInvalidCredential)
	}
	for i := 0; i < len(credential); i++ {
		if b := credential[i]; b < 0x20 || b > 0x7e {
			return fmt.Errorf("%w: byte %d is not printable ASCII", ErrInvalidCredential, i)
		}
	}
	return nil
}

// bearer is the credentials.PerRPCCredentials of WithCredential.
type bearer struct {
	credential string
	requireTLS bool
}

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if b.requireTLS {
		// grpc-go already refuses an insecure connection (RequireTransportSecurity); this
		// also refuses a transport that reports less than privacy and integrity.
		ri, _ := credentials.RequestInfoFromContext(ctx)
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("gatewayclient: not sending the credential: %w", err)
		}
	}
	return map[string]string{"authorization": "Bearer " + b.credential}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.requireTLS }
