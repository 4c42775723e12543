package main

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"
)

// The cases come from run_bench.py pace() itself (CPython 3, float64 seconds), with
// period = chunk_ms / 1000 (0.02 for the default 20 ms chunks, --chunk-ms otherwise):
//
//	now = now_ns / 1e9; offset = (sid * 0.6180339887498949) % 1.0 * period
//	t0 = math.ceil((now - offset) / period) * period + offset
//	max_sends = int((hard_stop - t0) / period) + 1; k = max_sends - 1
//	target_ns = int((t0 + k * period) * 1e9)
//
// with hard_stop given as int(hard_stop * 1e9), as the harness sends it.
func TestScheduleMatchesPython(t *testing.T) {
	cases := []struct {
		chunkMs                int
		sid, nowNs, hardStopNs int64
		t0                     string // float.hex(t0)
		maxSends, k, targetNs  int64
	}{
		{20, 1, 974741475815277, 974853650406300, "0x1.dbf2afc16b2f3p+19", 5608, 5607, 974853632360679},
		{20, 2, 879575616969357, 879669014158341, "0x1.ad7af3fdb7a61p+19", 4670, 4669, 879669004721359},
		{20, 3, 962698625723581, 962816308996936, "0x1.d6115462f9df7p+19", 5884, 5883, 962816297082039},
		{20, 7, 905110316167288, 905212941940776, "0x1.b9f2ca72e40cep+19", 5131, 5130, 905212926524758},
		{20, 99, 691257216780409, 691415915666476, "0x1.518727289c34fp+19", 7935, 7934, 691415903707297},
		{20, 300, 502817520567187, 502878549119080, "0x1.eb0861ce17ddfp+18", 3052, 3051, 502878548203932},
		{20, 301, 606515196131621, 606677220216227, "0x1.2826666b067a6p+19", 8101, 8100, 606677200564612},
		{20, 302, 714330054064423, 714338909191528, "0x1.5ccb4255676c1p+19", 442, 441, 714338892925292},
		{20, 12345, 446037572178228, 446230541355562, "0x1.b39564a5582bcp+18", 9649, 9648, 446230532591822},
		{20, 654321, 831947563745686, 832070868505249, "0x1.96397250b329bp+19", 6165, 6164, 832070852351056},
		{20, 999999, 701580289266279, 701583781913300, "0x1.569189d6568d6p+19", 174, 173, 701583767414318},
		{20, 4000000000, 71119337867446, 71131718312927, "0x1.15cf5709b051fp+16", 619, 618, 71131699991588},
		{100, 1, 245291044092924, 245433828070219, "0x1.df1587e92c7c8p+17", 1428, 1427, 245433761803398},
		{100, 2, 50732335927909, 50801996733048, "0x1.8c58d8e2fd7d7p+15", 696, 695, 50801923606797},
		{100, 7, 71864781433468, 71907362517969, "0x1.18b8d526d5351p+16", 426, 425, 71907332623792},
		{100, 99, 792250370845272, 792354449271108, "0x1.82d74d64a6a26p+19", 1041, 1040, 792354418536488},
		{100, 300, 141873705425266, 142000711509768, "0x1.1518ded9bb781p+17", 1270, 1269, 142000641019662},
		{100, 12345, 410525921892688, 410635501164264, "0x1.90e77da11f412p+18", 1096, 1095, 410635462959111},
		{100, 4000000000, 397690648866877, 397751167823999, "0x1.845eaccc1c667p+18", 605, 604, 397751099957943},
		{40, 5, 409886686183032, 409977011263544, "0x1.9047ae4f92e2fp+18", 2258, 2257, 409977003606797},
		{40, 77, 354118034180752, 354232899647657, "0x1.59d184111dba5p+18", 2871, 2870, 354232863544685},
	}
	for _, c := range cases {
		want, err := strconv.ParseFloat(c.t0, 64)
		if err != nil {
			t.Fatal(err)
		}
		periodS := float64(c.chunkMs) / 1000
		t0, maxSends := schedule(c.sid, float64(c.nowNs)/1e9, float64(c.hardStopNs)/1e9, periodS)
		if t0 != want || maxSends != c.maxSends {
			t.Errorf("%d ms, sid %d: t0 %x max_sends %d, want %x %d", c.chunkMs, c.sid, t0, maxSends, want, c.maxSends)
		}
		if got := targetNs(t0, c.k, periodS); got != c.targetNs {
			t.Errorf("%d ms, sid %d: target_ns(%d) = %d, want %d", c.chunkMs, c.sid, c.k, got, c.targetNs)
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

// A 100 ms client chunk (-chunk-ms 100) is what run_bench.py pace() sends for chunk_ms=100:
// b"".join(make_chunk(now_ns, sid, k * 5 + j) for j in range(5)), make_chunk being
// HEADER.pack(now_ns, sid, seq) + tail. With tail = bytes(i % 251 for i in range(624)),
// now_ns 1234567890123456789, sid 42, k 7, Python's sha256 of that join is below.
func TestClientChunkMatchesPython(t *testing.T) {
	tail := make([]byte, tailBytes)
	for i := range tail {
		tail[i] = byte(i % 251)
	}
	p := &phase{g: &loadgen{tail: tail, chunkMs: 100}}
	buf := p.newChunk()
	if len(buf) != 5*chunkBytes {
		t.Fatalf("client chunk of %d bytes, want %d", len(buf), 5*chunkBytes)
	}
	putHeaders(buf, 1234567890123456789, 42, 7)
	sum := sha256.Sum256(buf)
	if got := hex.EncodeToString(sum[:]); got != "ab1666dbb58fdc2b3e793093bbdf1ad7aa19218a29a446b93e1c05243973ee9f" {
		t.Errorf("sha256 of the 100 ms client chunk %s", got)
	}
}

func TestMonoNsDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = monoNs() }); n != 0 {
		t.Errorf("monoNs allocates %v times", n)
	}
}
