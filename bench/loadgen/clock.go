package main

import "golang.org/x/sys/unix"

// monoNs is CLOCK_MONOTONIC in ns: the clock of Python's time.monotonic_ns(), which the
// emulator (another process) reads when a frame arrives.
func monoNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

// monoSeconds is time.monotonic(): the same clock as a float64 of seconds (CPython
// converts the ns count with (double)ns / 1e9).
func monoSeconds() float64 {
	return float64(monoNs()) / 1e9
}
