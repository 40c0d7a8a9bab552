package broker

import (
	"strconv"
	"time"

	"moat/internal/topic"
)

// sysLoop publishes the $SYS/broker topics as retained messages, at start
// and then every sys interval, so a new subscriber gets them at once.
func (s *Server) sysLoop() {
	if s.cfg.Sys.Enabled != nil && !*s.cfg.Sys.Enabled {
		return
	}
	interval := s.cfg.Sys.Interval.Duration
	if interval <= 0 {
		interval = 10 * time.Second
	}
	var scratch []topic.Subscription
	s.publishSys(&scratch)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.publishSys(&scratch)
		case <-s.done:
			return
		}
	}
}

func (s *Server) publishSys(scratch *[]topic.Subscription) {
	now := time.Now()
	s.mu.RLock()
	nsess := len(s.sessions)
	s.mu.RUnlock()
	values := [...]struct {
		topic string
		value string
	}{
		{"$SYS/broker/version", "moat " + s.version},
		{"$SYS/broker/uptime", strconv.FormatInt(int64(now.Sub(s.started)/time.Second), 10) + " seconds"},
		{"$SYS/broker/clients/connected", strconv.FormatInt(s.stats.connected.Load(), 10)},
		{"$SYS/broker/clients/total", strconv.Itoa(nsess)},
		{"$SYS/broker/clients/connections_total", strconv.FormatInt(s.stats.totalConn.Load(), 10)},
		{"$SYS/broker/messages/received", strconv.FormatInt(s.stats.msgsRecv.Load(), 10)},
		{"$SYS/broker/messages/sent", strconv.FormatInt(s.stats.msgsSent.Load(), 10)},
		{"$SYS/broker/messages/dropped", strconv.FormatInt(s.stats.dropped.Load(), 10)},
		{"$SYS/broker/bytes/received", strconv.FormatInt(s.stats.bytesRecv.Load(), 10)},
		{"$SYS/broker/bytes/sent", strconv.FormatInt(s.stats.bytesSent.Load(), 10)},
		{"$SYS/broker/retained messages/count", strconv.Itoa(s.retained.Len())},
		{"$SYS/broker/subscriptions/count", strconv.Itoa(s.trie.Len())},
	}
	for _, v := range values {
		s.publish(&Message{Topic: v.topic, Payload: []byte(v.value), Retain: true, Created: now}, scratch)
	}
}
