// Package gatewayclient is a thin helper over the generated avatar.gateway.v1 stubs
// (package gatewayv1): a connection with TLS and a per-call credential (NewConn), a
// config-first Drive stream, 16-bit PCM WAV reading, real-time pacing of audio in chunks,
// and decoding the google.rpc.ErrorInfo the gateway puts in every failed call's status.
//
// A typical caller:
//
//	conn, _ := gatewayclient.NewConn("gateway.example.com:443",
//		gatewayclient.WithCAFile("ca.pem"), gatewayclient.WithCredential(apiKey))
//	defer conn.Close()
//	client := gatewayv1.NewAvatarGatewayClient(conn)
//	session, _ := client.CreateSession(ctx, &gatewayv1.CreateSessionRequest{Vendor: "zegocloud", AvatarId: "zego_emma"})
//	audio, _ := gatewayclient.ReadWAV("hello.wav")
//	drive, err := gatewayclient.Drive(ctx, client, session.GetName(), audio.Format())
//	go func() { for { ev, err := drive.Recv(); ... } }()
//	_ = drive.SendPaced(ctx, audio, 20*time.Millisecond)
//	_ = drive.EndTurn()
//	_ = drive.CloseSend()
//
// A gateway without TLS, such as a local sandbox (avatar-gateway serve --sandbox), needs
// gatewayclient.NewConn("127.0.0.1:50051", gatewayclient.WithInsecurePlaintext()).
//
// Tracing: a connection from NewConn sends the OpenTelemetry trace context of each call's
// ctx (W3C traceparent and tracestate, through the otelgrpc client handler), so the
// gateway's spans join the caller's trace; WithoutOpenTelemetry turns it off.
//
// Errors: gatewayclient.ErrorInfo(err) returns the reason, domain and metadata.
package gatewayclient
