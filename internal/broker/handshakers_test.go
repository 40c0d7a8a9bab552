package broker

import (
	"sync"
	"testing"
	"time"
)

// TestHandshakersReuse: work goes to an idle worker when there is one and
// to a new worker when all are busy; workers end with the server.
func TestHandshakersReuse(t *testing.T) {
	s := &Server{done: make(chan struct{})}
	h := newHandshakers(s)
	done := make(chan struct{})
	h.run(func() { done <- struct{}{} })
	<-done
	// The worker stays for the next job: a blocking hand-off reaches it.
	for i := 0; i < 3; i++ {
		select {
		case h.work <- func() { done <- struct{}{} }:
		case <-time.After(5 * time.Second):
			t.Fatal("no idle worker took the job")
		}
		<-done
	}
	if n := h.started.Load(); n != 1 {
		t.Fatalf("started %d workers, want 1", n)
	}

	// Busy workers: a new one starts, none waits.
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		h.run(func() { wg.Done(); <-release })
	}
	wg.Wait() // all four run at once
	close(release)
	close(s.done)
	s.wg.Wait()
}
