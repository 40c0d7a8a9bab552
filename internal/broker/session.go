package broker

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/auth"
)

// neverExpire is the session expiry interval meaning "does not expire".
const neverExpire = 0xFFFFFFFF

// outState is where an outbound QoS 1/2 message stands.
type outState byte

const (
	awaitAck  outState = iota + 1 // PUBLISH sent, PUBACK or PUBREC awaited
	awaitComp                     // PUBREL sent, PUBCOMP awaited
)

// outMsg is an outbound message awaiting acknowledgement.
type outMsg struct {
	delivery
	id    uint16
	state outState
}

// session is the state of one client id, online or not.
type session struct {
	id     string
	online atomic.Bool

	// mu guards the following fields.
	mu             sync.Mutex
	conn           *conn
	principal      *auth.Principal
	version        byte
	expiry         uint32 // session expiry interval, seconds
	stored         bool   // a record of this session is in the store
	disconnectedAt time.Time
	inflight       map[uint16]*outMsg
	seq            uint64 // last sequence number given to a QoS 1/2 delivery
	nextID         uint16
	queue          []delivery
	qhead          int
	qbytes         int64
	inQoS2         map[uint16]struct{} // PUBREC sent, PUBREL awaited
	will           *Message
	willDelay      uint32
	willTimer      *time.Timer
	expTimer       *time.Timer
	ended          bool
	dropped        int64
}

func newSession(id string) *session {
	return &session{
		id:       id,
		inflight: make(map[uint16]*outMsg),
		inQoS2:   make(map[uint16]struct{}),
	}
}

// queued returns the number of messages waiting in the queue.
// Callers hold mu.
func (s *session) queued() int { return len(s.queue) - s.qhead }

// allocID returns a free packet identifier. Callers hold mu and have
// checked that inflight is not full (it never holds 65535 entries).
func (s *session) allocID() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.inflight[s.nextID]; !used {
			return s.nextID
		}
	}
}

// enqueue appends d to the offline/overflow queue. When the queue is full
// the overflow policy decides: with dropOldest the oldest queued messages
// make room (and are returned), otherwise d is refused. Callers hold mu.
func (s *session) enqueue(d delivery, maxCount int, maxBytes int64, dropOldest bool) (kept bool, dropped []delivery) {
	sz := d.msg.size()
	full := func() bool {
		return (maxCount > 0 && s.queued() >= maxCount) || (maxBytes > 0 && s.qbytes+sz > maxBytes)
	}
	if maxBytes > 0 && sz > maxBytes {
		// Larger than the whole queue may hold: dropping others would
		// not make room.
		s.dropped++
		return false, nil
	}
	for full() {
		if !dropOldest || s.queued() == 0 {
			s.dropped++
			return false, dropped
		}
		old, _ := s.dequeue()
		s.dropped++
		dropped = append(dropped, old)
	}
	if s.qhead > 0 && s.qhead >= len(s.queue)/2 {
		n := copy(s.queue, s.queue[s.qhead:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.qhead = 0
	}
	s.queue = append(s.queue, d)
	s.qbytes += sz
	return true, dropped
}

// dequeue removes and returns the oldest queued delivery. Callers hold mu.
func (s *session) dequeue() (delivery, bool) {
	if s.qhead >= len(s.queue) {
		return delivery{}, false
	}
	d := s.queue[s.qhead]
	s.queue[s.qhead] = delivery{}
	s.qhead++
	if d.msg != nil {
		s.qbytes -= d.msg.size()
	}
	if s.qhead == len(s.queue) {
		s.queue = s.queue[:0]
		s.qhead = 0
	}
	return d, true
}

// inflightInOrder returns the inflight messages in the order they were
// first sent. Callers hold mu.
func (s *session) inflightInOrder() []*outMsg {
	out := make([]*outMsg, 0, len(s.inflight))
	for _, m := range s.inflight {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// stopTimers cancels the will-delay and expiry timers. Callers hold mu.
func (s *session) stopTimers() {
	if s.willTimer != nil {
		s.willTimer.Stop()
		s.willTimer = nil
	}
	if s.expTimer != nil {
		s.expTimer.Stop()
		s.expTimer = nil
	}
}
