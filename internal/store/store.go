// Package store owns everything the broker keeps across restarts: sessions
// (with their subscriptions and pending wills), outbound QoS 1/2 messages
// (queued or in flight), inbound QoS 2 packet ids awaiting PUBREL, and
// retained messages.
//
// Writes are applied in the order they are submitted and are made durable
// in groups (group commit): Sync registers a callback that runs once every
// write submitted before it is as durable as the sync policy promises. The
// broker acknowledges a client's PUBLISH (PUBACK/PUBREC) from such a
// callback, so nothing acknowledged is lost.
package store

import (
	"time"
)

// Policy says when writes reach the disk.
type Policy string

const (
	// SyncAlways commits and fsyncs every write on its own before anything
	// after it is acknowledged. Nothing acknowledged is lost, even on power
	// loss; throughput is bound to the disk's fsync rate.
	SyncAlways Policy = "always"
	// SyncBatch (the default) commits the writes of many connections in one
	// transaction with one fsync, and acknowledges them together. Nothing
	// acknowledged is lost, even on power loss; latency grows by at most
	// one commit.
	SyncBatch Policy = "batch"
	// SyncPeriodic writes without fsync and fsyncs on an interval. A crash
	// of the broker process (kill -9) loses nothing, because written pages
	// are in the operating system's cache; a power loss or kernel crash can
	// lose what was acknowledged during the last interval.
	SyncPeriodic Policy = "periodic"
)

// Store is the durable state of a broker.
type Store interface {
	// Apply submits writes; they are applied in submission order.
	Apply(ops ...Op)
	// Sync calls done once every write submitted before it is durable
	// (per the policy), or with the error that prevented it. done runs on
	// the store's goroutine and must not block.
	Sync(done func(error))
	// Load calls the functions for everything stored: retained messages,
	// then each session with its messages and inbound ids.
	Load(retained func(*Message) error, session func(*Session, []*Message, []uint16) error) error
	// Close flushes and closes the store.
	Close() error
	// Path names the store for messages ("memory" for the memory store).
	Path() string
}

// OpKind is the kind of a write.
type OpKind byte

// Write kinds.
const (
	PutSession OpKind = iota + 1
	DeleteSession
	PutMessage
	DeleteMessage
	PutInbound
	DeleteInbound
	PutRetained
	DeleteRetained
)

// Op is one write.
type Op struct {
	Kind     OpKind
	ClientID string
	Session  *Session // PutSession
	Message  *Message // PutMessage, PutRetained
	Seq      uint64   // DeleteMessage
	PacketID uint16   // PutInbound, DeleteInbound
	Topic    string   // DeleteRetained
}

// Principal is the stored identity owning a session.
type Principal struct {
	ID       string
	Method   string
	Username string
}

// Subscription is a stored subscription.
type Subscription struct {
	Filter            string
	Group             string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32
}

// Session is a stored session.
type Session struct {
	ClientID       string
	Owner          Principal
	Version        byte
	Expiry         uint32    // session expiry interval, seconds
	DisconnectedAt time.Time // zero while connected
	Subscriptions  []Subscription
	Will           *Message // nil: none pending
	WillDelay      uint32
}

// Message states.
const (
	StateQueued   byte = 0 // not sent yet
	StateAwaitAck byte = 1 // PUBLISH sent, PUBACK/PUBREC awaited
	StateAwaitRel byte = 2 // PUBREL sent, PUBCOMP awaited
)

// UserProperty is an MQTT 5 user property.
type UserProperty struct{ Key, Value string }

// Message is a stored application message: an outbound one of a session
// (Seq, State, PacketID, DeliverQoS meaningful) or a retained one.
type Message struct {
	Seq        uint64
	State      byte
	PacketID   uint16
	DeliverQoS byte
	DeliverRet bool
	SubIDs     []uint32

	Topic           string
	Payload         []byte
	QoS             byte
	Retain          bool
	From            string
	Created         time.Time
	Expiry          time.Time
	PayloadFormat   byte
	HasFormat       bool
	ContentType     string
	HasContentType  bool
	ResponseTopic   string
	HasResponse     bool
	CorrelationData []byte
	HasCorrelation  bool
	User            []UserProperty
}
