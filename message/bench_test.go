package message

import (
	"strconv"
	"testing"
)

var benchSizes = []int{64, 1 << 10, 64 << 10}

func benchMessage(size int) Message {
	return Message{
		UID:    UID{Node: fixedUUID(1), Index: 4242},
		Header: Header{Type: TypeMsg, HopLimit: 32, Target: fixedUUID(2), Epoch: 7, Ref: 4240},
		Body:   make([]byte, size),
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkEncode appends a data frame into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			m := benchMessage(size)
			buf := make([]byte, 0, HeaderSize+size)
			b.ReportAllocs()
			b.SetBytes(int64(HeaderSize + size))
			for b.Loop() {
				buf = m.Append(buf[:0])
			}
		})
	}
}

// BenchmarkDecodeHeader decodes the header of a 1 KiB data frame.
func BenchmarkDecodeHeader(b *testing.B) {
	m := benchMessage(1 << 10)
	frame := m.Encode()
	b.ReportAllocs()
	b.SetBytes(HeaderSize)
	for b.Loop() {
		if _, _, _, err := DecodeHeader(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode decodes whole data frames (the body is aliased, not copied).
func BenchmarkDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			m := benchMessage(size)
			frame := m.Encode()
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := Decode(frame, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchStateList is one link-state record with 10 neighbours and 2 addresses.
func benchStateList() StateList {
	s := State{Origin: fixedUUID(1), Epoch: 3, Seq: 99, FreeSlots: 0,
		Addrs: []string{"quic://192.168.1.10:4242", "quic://[fd00::10]:4242"}}
	for i := range 10 {
		s.Neighbors = append(s.Neighbors, fixedUUID(byte(16*i)))
	}
	return StateList{s}
}

// BenchmarkDecodeStateList decodes a network_state body with 10 neighbours.
func BenchmarkDecodeStateList(b *testing.B) {
	body := benchStateList().Append(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeStateList(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendStateList encodes a network_state body with 10 neighbours
// into a reused buffer.
func BenchmarkAppendStateList(b *testing.B) {
	sl := benchStateList()
	buf := sl.Append(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = sl.Append(buf[:0])
	}
}
