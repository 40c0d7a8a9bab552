package packet

import (
	"bytes"
	"testing"
)

// fuzzVersion maps an input byte to a protocol level.
func fuzzVersion(b byte) byte { return versions[int(b)%len(versions)] }

func versionSelector(v byte) byte {
	for i, x := range versions {
		if x == v {
			return byte(i)
		}
	}
	panic("bad version")
}

// FuzzDecode feeds arbitrary bytes to the decoder. The first byte selects
// the protocol level, the rest is a packet (fixed header and body).
// Decoding must not panic; a packet that decodes must re-encode, and the
// re-encoded bytes must decode to an equal packet and encode to the same
// bytes.
func FuzzDecode(f *testing.F) {
	for _, v := range versions {
		for _, p := range samplePackets(v) {
			b, err := Encode(p, v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(append([]byte{versionSelector(v)}, b...))
		}
	}
	for _, tt := range malformedTests {
		f.Add(append([]byte{versionSelector(tt.version)}, tt.wire...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		version := fuzzVersion(data[0])
		data = data[1:]
		fh, n, err := ParseFixedHeader(data)
		fh2, err2 := ReadFixedHeader(bytes.NewReader(data))
		if (err == nil) != (err2 == nil) || err == nil && fh != fh2 {
			t.Fatalf("ParseFixedHeader = %+v, %v; ReadFixedHeader = %+v, %v", fh, err, fh2, err2)
		}
		if err != nil {
			return
		}
		body := data[n:]
		if len(body) > fh.Remaining {
			body = body[:fh.Remaining]
		}
		fh.Remaining = len(body) // decode what we have; truncation is tested by the body itself
		p, err := Decode(fh, body, version)
		if fh.Type == PUBLISH && fh.Check(version) == nil {
			var reused Publish
			_ = reused.Decode(fh.Flags, []byte("\x00\x01x\x00\x01\x00"), V5)
			if rerr := reused.Decode(fh.Flags, body, version); (rerr == nil) != (err == nil) {
				t.Fatalf("Publish.Decode err %v, Decode err %v", rerr, err)
			} else if err == nil && !deepEqual(&reused, p) {
				t.Fatalf("Publish.Decode\n %+v\nDecode\n %+v", reused, p)
			}
		}
		if fh.Type >= PUBACK && fh.Type <= PUBCOMP {
			reused := Ack{PacketType: PUBREC, PacketID: 9, ReasonCode: QuotaExceeded,
				Properties: pr(Properties{ReasonString: "r", User: []UserProperty{{"k", "v"}}}, PropReasonString)}
			if rerr := reused.Decode(fh, body, version); (rerr == nil) != (err == nil) {
				t.Fatalf("Ack.Decode err %v, Decode err %v", rerr, err)
			} else if err == nil && !deepEqual(&reused, p) {
				t.Fatalf("Ack.Decode\n %+v\nDecode\n %+v", reused, p)
			}
		}
		if err != nil {
			if _, ok := ReasonCodeOf(err); !ok {
				t.Fatalf("error without reason code: %v", err)
			}
			if p != nil {
				t.Fatalf("packet returned with error %v", err)
			}
			return
		}
		ev := version
		if c, ok := p.(*Connect); ok {
			ev = c.ProtocolVersion
		}
		enc, err := Encode(p, ev)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", p, err)
		}
		fh3, n3, err := ParseFixedHeader(enc)
		if err != nil || n3+fh3.Remaining != len(enc) {
			t.Fatalf("re-encoded header: %+v %d %v (len %d)", fh3, n3, err, len(enc))
		}
		p2, err := Decode(fh3, enc[n3:], ev)
		if err != nil {
			t.Fatalf("decode re-encoded % x: %v", enc, err)
		}
		if !deepEqual(p, p2) {
			t.Fatalf("unstable round trip:\n %+v\n %+v", p, p2)
		}
		enc2, err := Encode(p2, ev)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable encoding:\n % x\n % x (%v)", enc, enc2, err)
		}
	})
}

// FuzzPublishReuse decodes two PUBLISH bodies into the same value: the
// result for the second must equal a fresh decode of it. The first byte of
// each input holds the flags (low nibble) and the version selector (high
// nibble).
func FuzzPublishReuse(f *testing.F) {
	var pubs [][]byte
	for _, v := range versions {
		for _, p := range samplePackets(v) {
			if p.Type() != PUBLISH {
				continue
			}
			b, _ := Encode(p, v)
			fh, n, _ := ParseFixedHeader(b)
			pubs = append(pubs, append([]byte{versionSelector(v)<<4 | fh.Flags}, b[n:]...))
		}
	}
	for _, a := range pubs {
		for _, b := range pubs {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if len(a) == 0 || len(b) == 0 {
			return
		}
		var p Publish
		_ = p.Decode(a[0]&0x0F, a[1:], fuzzVersion(a[0]>>4))
		err := p.Decode(b[0]&0x0F, b[1:], fuzzVersion(b[0]>>4))
		var q Publish
		qerr := q.Decode(b[0]&0x0F, b[1:], fuzzVersion(b[0]>>4))
		if (err == nil) != (qerr == nil) {
			t.Fatalf("reused err %v, fresh err %v", err, qerr)
		}
		if err != nil {
			c1, _ := ReasonCodeOf(err)
			c2, _ := ReasonCodeOf(qerr)
			if c1 != c2 {
				t.Fatalf("reused err %v, fresh err %v", err, qerr)
			}
			return
		}
		if !deepEqual(&p, &q) {
			t.Fatalf("reused\n %+v\nfresh\n %+v", p, q)
		}
	})
}
