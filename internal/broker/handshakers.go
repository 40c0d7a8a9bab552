package broker

import (
	"sync/atomic"
	"time"
)

// handshakerIdle is how long a handshake goroutine waits for the next
// connection before it ends and frees its stack.
const handshakerIdle = 10 * time.Second

// handshakers runs the start of TLS connections (PROXY header, TLS
// handshake, then a hand-off to the connection's own goroutine) on
// goroutines that stay for the next connection. A TLS handshake needs a
// deep stack (ECDSA signing, the key schedule): a fresh goroutine grows
// its stack several times for each one, a reused goroutine already has
// it. No connection waits for a worker: when none is idle, a new one
// starts, so a slow client delays nobody else; the handshake gate bounds
// how many handshakes run at once.
type handshakers struct {
	s       *Server
	work    chan func()  // unbuffered: a send succeeds only into an idle worker
	started atomic.Int64 // workers started so far
}

func newHandshakers(s *Server) *handshakers {
	return &handshakers{s: s, work: make(chan func())}
}

// run runs f on an idle worker, or on a new one.
func (h *handshakers) run(f func()) {
	select {
	case h.work <- f:
	default:
		h.started.Add(1)
		h.s.goFunc(func() { h.worker(f) })
	}
}

func (h *handshakers) worker(f func()) {
	idle := time.NewTimer(handshakerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(handshakerIdle)
		select {
		case f = <-h.work:
		case <-idle.C:
			return
		case <-h.s.done:
			return
		}
	}
}
