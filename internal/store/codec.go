package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Records are encoded as a format byte followed by fields in a fixed order:
// unsigned varints, and length-prefixed byte strings.
const recordFormat = 1

var errTruncated = errors.New("truncated record")

type enc struct{ b []byte }

func (e *enc) u(v uint64)     { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) bytes(p []byte) { e.u(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)   { e.u(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) flag(v bool)    { e.u(b2u(v)) }
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.u(0)
		return
	}
	e.u(uint64(t.UnixNano()))
}

func b2u(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	p := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.bytes()) }
func (d *dec) flag() bool  { return d.u() != 0 }
func (d *dec) time() time.Time {
	v := d.u()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(v))
}

func encodeMessage(e *enc, m *Message) {
	e.u(m.Seq)
	e.u(uint64(m.State))
	e.u(uint64(m.PacketID))
	e.u(uint64(m.DeliverQoS))
	e.flag(m.DeliverRet)
	e.u(uint64(len(m.SubIDs)))
	for _, id := range m.SubIDs {
		e.u(uint64(id))
	}
	e.str(m.Topic)
	e.bytes(m.Payload)
	e.u(uint64(m.QoS))
	e.flag(m.Retain)
	e.str(m.From)
	e.time(m.Created)
	e.time(m.Expiry)
	e.flag(m.HasFormat)
	e.u(uint64(m.PayloadFormat))
	e.flag(m.HasContentType)
	e.str(m.ContentType)
	e.flag(m.HasResponse)
	e.str(m.ResponseTopic)
	e.flag(m.HasCorrelation)
	e.bytes(m.CorrelationData)
	e.u(uint64(len(m.User)))
	for _, u := range m.User {
		e.str(u.Key)
		e.str(u.Value)
	}
}

func decodeMessage(d *dec) *Message {
	m := &Message{}
	m.Seq = d.u()
	m.State = byte(d.u())
	m.PacketID = uint16(d.u())
	m.DeliverQoS = byte(d.u())
	m.DeliverRet = d.flag()
	if n := d.u(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			d.err = errTruncated
			return m
		}
		m.SubIDs = make([]uint32, n)
		for i := range m.SubIDs {
			m.SubIDs[i] = uint32(d.u())
		}
	}
	m.Topic = d.str()
	m.Payload = d.bytes()
	m.QoS = byte(d.u())
	m.Retain = d.flag()
	m.From = d.str()
	m.Created = d.time()
	m.Expiry = d.time()
	m.HasFormat = d.flag()
	m.PayloadFormat = byte(d.u())
	m.HasContentType = d.flag()
	m.ContentType = d.str()
	m.HasResponse = d.flag()
	m.ResponseTopic = d.str()
	m.HasCorrelation = d.flag()
	m.CorrelationData = d.bytes()
	if n := d.u(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			d.err = errTruncated
			return m
		}
		m.User = make([]UserProperty, n)
		for i := range m.User {
			m.User[i].Key = d.str()
			m.User[i].Value = d.str()
		}
	}
	return m
}

// MarshalMessage encodes a message record.
func MarshalMessage(m *Message) []byte {
	e := enc{b: make([]byte, 0, 64+len(m.Topic)+len(m.Payload))}
	e.u(recordFormat)
	encodeMessage(&e, m)
	return e.b
}

// UnmarshalMessage decodes a message record.
func UnmarshalMessage(b []byte) (*Message, error) {
	d := dec{b: b}
	if f := d.u(); d.err == nil && f != recordFormat {
		return nil, fmt.Errorf("unknown record format %d", f)
	}
	m := decodeMessage(&d)
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// MarshalSession encodes a session record.
func MarshalSession(s *Session) []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.u(recordFormat)
	e.str(s.ClientID)
	e.str(s.Owner.ID)
	e.str(s.Owner.Method)
	e.str(s.Owner.Username)
	e.u(uint64(s.Version))
	e.u(uint64(s.Expiry))
	e.time(s.DisconnectedAt)
	e.u(uint64(len(s.Subscriptions)))
	for _, sub := range s.Subscriptions {
		e.str(sub.Filter)
		e.str(sub.Group)
		e.u(uint64(sub.QoS))
		e.flag(sub.NoLocal)
		e.flag(sub.RetainAsPublished)
		e.u(uint64(sub.RetainHandling))
		e.u(uint64(sub.SubID))
	}
	e.flag(s.Will != nil)
	if s.Will != nil {
		encodeMessage(&e, s.Will)
		e.u(uint64(s.WillDelay))
	}
	return e.b
}

// UnmarshalSession decodes a session record.
func UnmarshalSession(b []byte) (*Session, error) {
	d := dec{b: b}
	if f := d.u(); d.err == nil && f != recordFormat {
		return nil, fmt.Errorf("unknown record format %d", f)
	}
	s := &Session{}
	s.ClientID = d.str()
	s.Owner.ID = d.str()
	s.Owner.Method = d.str()
	s.Owner.Username = d.str()
	s.Version = byte(d.u())
	s.Expiry = uint32(d.u())
	s.DisconnectedAt = d.time()
	if n := d.u(); n > 0 && d.err == nil {
		if n > uint64(len(d.b)) {
			return nil, errTruncated
		}
		s.Subscriptions = make([]Subscription, n)
		for i := range s.Subscriptions {
			sub := &s.Subscriptions[i]
			sub.Filter = d.str()
			sub.Group = d.str()
			sub.QoS = byte(d.u())
			sub.NoLocal = d.flag()
			sub.RetainAsPublished = d.flag()
			sub.RetainHandling = byte(d.u())
			sub.SubID = uint32(d.u())
		}
	}
	if d.flag() {
		s.Will = decodeMessage(&d)
		s.WillDelay = uint32(d.u())
	}
	if d.err != nil {
		return nil, d.err
	}
	return s, nil
}
