package main

import (
	"encoding/hex"
	"strconv"
	"testing"
)

// The cases come from run_bench.py pace() itself (CPython 3, float64 seconds):
//
//	now = now_ns / 1e9; offset = (sid * 0.6180339887498949) % 1.0 * 0.02
//	t0 = math.ceil((now - offset) / 0.02) * 0.02 + offset
//	max_chunks = int((hard_stop - t0) / 0.02) + 1; k = max_chunks - 1
//	target_ns = int((t0 + k * 0.02) * 1e9)
//
// with hard_stop given as int(hard_stop * 1e9), as the harness sends it.
func TestScheduleMatchesPython(t *testing.T) {
	cases := []struct {
		sid, nowNs, hardStopNs int64
		t0                     string // float.hex(t0)
		maxChunks, k, targetNs int64
	}{
		{1, 974741475815277, 974853650406300, "0x1.dbf2afc16b2f3p+19", 5608, 5607, 974853632360679},
		{2, 879575616969357, 879669014158341, "0x1.ad7af3fdb7a61p+19", 4670, 4669, 879669004721359},
		{3, 962698625723581, 962816308996936, "0x1.d6115462f9df7p+19", 5884, 5883, 962816297082039},
		{7, 905110316167288, 905212941940776, "0x1.b9f2ca72e40cep+19", 5131, 5130, 905212926524758},
		{99, 691257216780409, 691415915666476, "0x1.518727289c34fp+19", 7935, 7934, 691415903707297},
		{300, 502817520567187, 502878549119080, "0x1.eb0861ce17ddfp+18", 3052, 3051, 502878548203932},
		{301, 606515196131621, 606677220216227, "0x1.2826666b067a6p+19", 8101, 8100, 606677200564612},
		{302, 714330054064423, 714338909191528, "0x1.5ccb4255676c1p+19", 442, 441, 714338892925292},
		{12345, 446037572178228, 446230541355562, "0x1.b39564a5582bcp+18", 9649, 9648, 446230532591822},
		{654321, 831947563745686, 832070868505249, "0x1.96397250b329bp+19", 6165, 6164, 832070852351056},
		{999999, 701580289266279, 701583781913300, "0x1.569189d6568d6p+19", 174, 173, 701583767414318},
		{4000000000, 71119337867446, 71131718312927, "0x1.15cf5709b051fp+16", 619, 618, 71131699991588},
	}
	for _, c := range cases {
		want, err := strconv.ParseFloat(c.t0, 64)
		if err != nil {
			t.Fatal(err)
		}
		t0, maxChunks := schedule(c.sid, float64(c.nowNs)/1e9, float64(c.hardStopNs)/1e9)
		if t0 != want || maxChunks != c.maxChunks {
			t.Errorf("sid %d: t0 %x max_chunks %d, want %x %d", c.sid, t0, maxChunks, want, c.maxChunks)
		}
		if got := targetNs(t0, c.k); got != c.targetNs {
			t.Errorf("sid %d: target_ns(%d) = %d, want %d", c.sid, c.k, got, c.targetNs)
		}
	}
}

// struct.pack("<qII", 1234567890123456789, 4000000001, 77).hex()
func TestHeaderMatchesPython(t *testing.T) {
	buf := make([]byte, chunkBytes)
	putHeader(buf, 1234567890123456789, 4000000001, 77)
	if got := hex.EncodeToString(buf[:headerBytes]); got != "1581e97df410221101286bee4d000000" {
		t.Errorf("header %s", got)
	}
}

func TestMonoNsDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = monoNs() }); n != 0 {
		t.Errorf("monoNs allocates %v times", n)
	}
}
