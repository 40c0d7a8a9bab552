package packet

import (
	"bytes"
	"testing"
)

func benchPublish() *Publish {
	return &Publish{
		QoS:      1,
		Topic:    "sensors/building-7/floor-3/room-12/temperature",
		PacketID: 4242,
		Properties: pr(Properties{
			PayloadFormat: 1,
			MessageExpiry: 3600,
			ContentType:   "application/json",
			User:          []UserProperty{{"unit", "celsius"}, {"src", "gw-1"}},
		}, PropPayloadFormat, PropMessageExpiry, PropContentType),
		Payload: bytes.Repeat([]byte("x"), 64),
	}
}

func benchDecodePublish(b *testing.B, version byte) {
	wire, err := Encode(benchPublish(), version)
	if err != nil {
		b.Fatal(err)
	}
	fh, n, err := ParseFixedHeader(wire)
	if err != nil {
		b.Fatal(err)
	}
	body := wire[n:]
	var p Publish
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decode(fh.Flags, body, version); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePublish decodes an MQTT 5 PUBLISH with a few properties
// and a 64-byte payload into a reused value: 0 allocs/op.
func BenchmarkDecodePublish(b *testing.B) { benchDecodePublish(b, V5) }

// BenchmarkDecodePublishV311 is the same for MQTT 3.1.1.
func BenchmarkDecodePublishV311(b *testing.B) { benchDecodePublish(b, V311) }

// BenchmarkDecodePublishFresh decodes through Decode into a new value.
func BenchmarkDecodePublishFresh(b *testing.B) {
	wire, _ := Encode(benchPublish(), V5)
	fh, n, _ := ParseFixedHeader(wire)
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(fh, wire[n:], V5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodePublish appends an MQTT 5 PUBLISH into a reused buffer:
// 0 allocs/op.
func BenchmarkEncodePublish(b *testing.B) {
	p := benchPublish()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = p.Append(buf[:0], V5); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkEncodePublishV311 is the same for MQTT 3.1.1.
func BenchmarkEncodePublishV311(b *testing.B) {
	p := benchPublish()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = p.Append(buf[:0], V311); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParseFixedHeader(b *testing.B) {
	wire := []byte{0x32, 0xC1, 0x02}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseFixedHeader(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeAck(b *testing.B) {
	wire := []byte{0x40, 0x02, 0x12, 0x34}
	fh, n, _ := ParseFixedHeader(wire)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(fh, wire[n:], V5); err != nil {
			b.Fatal(err)
		}
	}
}

// TestZeroAllocs keeps the hot paths allocation-free (benchmarks are not
// run by go test).
func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	p := benchPublish()
	for _, v := range []byte{V311, V5} {
		wire, _ := Encode(p, v)
		fh, n, _ := ParseFixedHeader(wire)
		var q Publish
		if a := testing.AllocsPerRun(100, func() { _ = q.Decode(fh.Flags, wire[n:], v) }); a != 0 {
			t.Errorf("v%d Publish.Decode: %v allocs", v, a)
		}
		buf := make([]byte, 0, 512)
		if a := testing.AllocsPerRun(100, func() { buf, _ = p.Append(buf[:0], v) }); a != 0 {
			t.Errorf("v%d Publish.Append: %v allocs", v, a)
		}
	}
}

func BenchmarkDecodeAckReused(b *testing.B) {
	wire := []byte{0x40, 0x02, 0x12, 0x34}
	fh, n, _ := ParseFixedHeader(wire)
	var a Ack
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Decode(fh, wire[n:], V5); err != nil {
			b.Fatal(err)
		}
	}
}
