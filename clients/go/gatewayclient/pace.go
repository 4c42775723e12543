package gatewayclient

import (
	"context"
	"time"
)

// Pace calls send with consecutive chunks of audio at real time: chunk i is sent at
// start + i*chunk on the monotonic clock, so scheduling jitter does not accumulate. It
// stops at the first send error or when ctx is done.
func Pace(ctx context.Context, audio *Audio, chunk time.Duration, send func([]byte) error) error {
	start := time.Now()
	var sent time.Duration
	for _, c := range audio.Chunks(chunk) {
		if wait := time.Until(start.Add(sent)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := send(c); err != nil {
			return err
		}
		sent += time.Duration(int64(len(c)) * int64(time.Second) / int64(audio.BytesPerSecond()))
	}
	return nil
}
