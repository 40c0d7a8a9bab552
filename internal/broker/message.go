package broker

import (
	"time"

	"moat/internal/packet"
)

// Message is an application message inside the broker. It is immutable
// once routed: every subscriber shares the same value.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props holds only the properties that travel with the message
	// (payload format, content type, response topic, correlation data,
	// user properties); message expiry is carried in Expiry instead.
	Props   packet.Properties
	Expiry  time.Time // zero: never expires
	From    string    // client id of the publisher ("" for the broker)
	Created time.Time
}

// expired reports whether the message expiry interval has passed.
func (m *Message) expired(now time.Time) bool {
	return !m.Expiry.IsZero() && !now.Before(m.Expiry)
}

// remaining returns the message expiry interval left, rounded up, in
// seconds, and whether the message has one.
func (m *Message) remaining(now time.Time) (uint32, bool) {
	if m.Expiry.IsZero() {
		return 0, false
	}
	d := m.Expiry.Sub(now)
	if d <= 0 {
		return 0, true
	}
	return uint32((d + time.Second - 1) / time.Second), true
}

// size estimates the bytes a message holds, for queue accounting.
func (m *Message) size() int64 {
	n := len(m.Topic) + len(m.Payload) + len(m.Props.ContentType) + len(m.Props.ResponseTopic) + len(m.Props.CorrelationData) + 64
	for _, u := range m.Props.User {
		n += len(u.Key) + len(u.Value) + 4
	}
	return int64(n)
}

// messageFromPublish copies what a message needs out of a decoded PUBLISH,
// whose byte slices alias the connection's read buffer.
func messageFromPublish(p *packet.Publish, from string, now time.Time) *Message {
	m := &Message{
		Topic:   p.Topic,
		QoS:     p.QoS,
		Retain:  p.Retain,
		From:    from,
		Created: now,
	}
	if len(p.Payload) > 0 {
		m.Payload = append([]byte(nil), p.Payload...)
	}
	src := &p.Properties
	if src.Has(packet.PropPayloadFormat) {
		m.Props.PayloadFormat = src.PayloadFormat
		m.Props.Set(packet.PropPayloadFormat)
	}
	if src.Has(packet.PropContentType) {
		m.Props.ContentType = src.ContentType
		m.Props.Set(packet.PropContentType)
	}
	if src.Has(packet.PropResponseTopic) {
		m.Props.ResponseTopic = src.ResponseTopic
		m.Props.Set(packet.PropResponseTopic)
	}
	if src.Has(packet.PropCorrelationData) {
		m.Props.CorrelationData = append([]byte{}, src.CorrelationData...)
		m.Props.Set(packet.PropCorrelationData)
	}
	if len(src.User) > 0 {
		m.Props.User = append([]packet.UserProperty(nil), src.User...)
		m.Props.Set(packet.PropUserProperty)
	}
	if src.Has(packet.PropMessageExpiry) {
		m.Expiry = now.Add(time.Duration(src.MessageExpiry) * time.Second)
	}
	return m
}

// delivery is one message on its way to one session.
type delivery struct {
	msg    *Message
	qos    byte
	retain bool
	subIDs []uint32
	seq    uint64 // per-session order of QoS 1/2 deliveries; the store key
}
