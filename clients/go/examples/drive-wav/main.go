// Command drive-wav creates an avatar session, drives it with a WAV file at real time,
// ends the turn, interrupts, prints every event and closes the session. Without -avatar,
// it takes the vendor's first avatar from ListAvatars.
//
// It connects with TLS, trusting the system roots or the CA in -ca-file, and sends the
// credential (an API key or a JWT, from $AVATAR_GATEWAY_CREDENTIAL or -credential) on
// every call. -plaintext turns TLS off, for a local sandbox gateway:
//
//	cd clients/go && go run ./examples/drive-wav -plaintext -target 127.0.0.1:50051 -wav ../testdata/sample-16k-mono.wav
//	AVATAR_GATEWAY_CREDENTIAL=... go run ./examples/drive-wav -target gateway.example.com:443 -ca-file ca.pem
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	gatewayv1 "github.com/avatargateway/avatar-gateway/clients/go/avatar/gateway/v1"
	"github.com/avatargateway/avatar-gateway/clients/go/gatewayclient"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func main() {
	target := flag.String("target", envOr("AVATAR_GATEWAY_TARGET", "127.0.0.1:50051"), "gateway address")
	vendor := flag.String("vendor", "zegocloud", "vendor: zegocloud, tencent or akool")
	avatar := flag.String("avatar", "", "the vendor's avatar id (default: the vendor's first avatar)")
	wavPath := flag.String("wav", "../testdata/sample-16k-mono.wav", "16-bit PCM WAV file to speak")
	caFile := flag.String("ca-file", "", "PEM file of the CA that signed the gateway's certificate (default: the system roots)")
	credential := flag.String("credential", "",
		"API key or JWT sent as authorization: Bearer (default $AVATAR_GATEWAY_CREDENTIAL, which keeps it out of ps)")
	plaintext := flag.Bool("plaintext", false, "no TLS, for a local sandbox gateway (a credential is then refused)")
	flag.Parse()
	if *credential == "" { // not the flag's default: -h would print it
		*credential = os.Getenv("AVATAR_GATEWAY_CREDENTIAL")
	}
	var opts []gatewayclient.ConnOption
	if *plaintext {
		opts = append(opts, gatewayclient.WithInsecurePlaintext())
	}
	if *caFile != "" {
		opts = append(opts, gatewayclient.WithCAFile(*caFile))
	}
	if *credential != "" {
		opts = append(opts, gatewayclient.WithCredential(*credential))
	}
	if err := run(*target, *vendor, *avatar, *wavPath, opts); err != nil {
		log.Fatal(err)
	}
}

func run(target, vendor, avatar, wavPath string, opts []gatewayclient.ConnOption) error {
	audio, err := gatewayclient.ReadWAV(wavPath)
	if err != nil {
		return err
	}
	conn, err := gatewayclient.NewConn(target, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := gatewayv1.NewAvatarGatewayClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if avatar == "" {
		if avatar, err = firstAvatar(ctx, client, vendor); err != nil {
			return err
		}
	}
	session, err := client.CreateSession(ctx, &gatewayv1.CreateSessionRequest{Vendor: vendor, AvatarId: avatar})
	if err != nil {
		return describe("CreateSession", err)
	}
	fmt.Printf("session %s ready: %s\n", session.GetName(), oneLine(session.GetPlayback()))
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		final, err := client.CloseSession(closeCtx, &gatewayv1.CloseSessionRequest{Name: session.GetName()})
		if err != nil {
			log.Print(describe("CloseSession", err))
			return
		}
		fmt.Printf("session %s closed: %s\n", final.GetName(), final.GetState())
	}()

	drive, err := gatewayclient.Drive(ctx, client, session.GetName(), audio.Format())
	if err != nil {
		return describe("Drive", err)
	}
	fmt.Printf("started: %s\n", oneLine(drive.Started))

	speaking := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		for {
			ev, err := drive.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				done <- err
				return
			}
			fmt.Printf("event: %s\n", oneLine(ev))
			if ev.GetSpeechStarted() != nil {
				select {
				case speaking <- struct{}{}:
				default:
				}
			}
		}
	}()

	fmt.Printf("sending %s of audio at real time\n", audio.Duration())
	if err := drive.SendPaced(ctx, audio, 20*time.Millisecond); err != nil {
		return describe("send audio", err)
	}
	if err := drive.EndTurn(); err != nil {
		return describe("end_turn", err)
	}
	select { // barge in once the avatar speaks (or after a while)
	case <-speaking:
	case <-time.After(5 * time.Second):
	}
	if err := drive.Interrupt(); err != nil {
		return describe("interrupt", err)
	}
	if err := drive.CloseSend(); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return describe("Drive", err)
	}
	fmt.Println("drive ended: OK")
	return nil
}

// firstAvatar returns the id of the first avatar the vendor lists.
func firstAvatar(ctx context.Context, client gatewayv1.AvatarGatewayClient, vendor string) (string, error) {
	listed, err := client.ListAvatars(ctx, &gatewayv1.ListAvatarsRequest{Parent: "vendors/" + vendor, PageSize: 1})
	if err != nil {
		return "", describe("ListAvatars", err)
	}
	if len(listed.GetAvatars()) == 0 {
		return "", fmt.Errorf("vendor %s lists no avatars: pass -avatar", vendor)
	}
	return listed.GetAvatars()[0].GetAvatarId(), nil
}

// describe adds the status code and the gateway's ErrorInfo reason to a call error.
func describe(what string, err error) error {
	st := status.Convert(err)
	if info := gatewayclient.ErrorInfo(err); info != nil {
		return fmt.Errorf("%s: %s %s (%s %v): %s", what, st.Code(), info.GetReason(), info.GetDomain(), info.GetMetadata(), st.Message())
	}
	return fmt.Errorf("%s: %s: %s", what, st.Code(), st.Message())
}

// oneLine renders a message as single-line JSON.
func oneLine(m proto.Message) string {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
