package broker

import (
	"time"

	"moat/internal/auth"

	"moat/internal/packet"
	"moat/internal/store"
	"moat/internal/topic"
)

// attach binds the connection to its session: a live connection holding
// the same client id is taken over (DISCONNECT 0x8E) and waited for; clean
// start discards the old session. It reports whether a session was present.
func (s *Server) attach(c *conn, cp *connectPacket) (bool, error) {
	id := cp.ClientID
	expiry := uint32(0)
	switch {
	case cp.ProtocolVersion == packet.V5:
		expiry = s.capSessionExpiry(cp.Properties.SessionExpiry)
	case !cp.CleanStart:
		expiry = neverExpire
	}
	var will *Message
	var willDelay uint32
	if cp.WillFlag {
		will = willMessage(cp, time.Now())
		if cp.WillProperties.Has(packet.PropWillDelay) {
			willDelay = cp.WillProperties.WillDelay
			if s.limits.maxWillDelay > 0 && willDelay > s.limits.maxWillDelay {
				willDelay = s.limits.maxWillDelay
			}
		}
	}
	deadline := time.NewTimer(s.limits.connectTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return false, c.refuse(cp.ProtocolVersion, packet.ServerShuttingDown, packet.V3ServerUnavailable, "server shutting down")
		}
		ss := s.sessions[id]
		if ss != nil {
			ss.mu.Lock()
			old := ss.conn
			owner := ss.principal
			ss.mu.Unlock()
			if !mayTakeOver(owner, c.principal) {
				s.mu.Unlock()
				s.log.Warn("session of another principal refused", "client", id, "owner", owner.String(), "principal", c.principal.String(), "remote", c.remote)
				return false, c.refuse(cp.ProtocolVersion, packet.NotAuthorized, packet.V3NotAuthorized, "client id belongs to another principal")
			}
			if old != nil {
				s.mu.Unlock()
				s.log.Info("session taken over", "client", id, "old_remote", old.remote, "new_remote", c.remote)
				old.kick(packet.SessionTakenOver)
				select {
				case <-old.detached:
				case <-deadline.C:
					old.abort()
					return false, c.refuse(cp.ProtocolVersion, packet.ServerBusy, packet.V3ServerUnavailable, "previous connection did not close in time")
				}
				continue
			}
		}
		var ended *session
		if ss != nil && cp.CleanStart {
			ended = ss
			ss = nil
		}
		present := ss != nil
		if ss == nil {
			ss = newSession(id)
			s.sessions[id] = ss
			s.index.Store(id, ss)
		}
		var endedWill *Message
		if ended != nil {
			endedWill = s.endLocked(ended)
		}
		ss.mu.Lock()
		ss.stopTimers() // a reconnect cancels a pending delayed will
		ss.will = will
		ss.willDelay = willDelay
		ss.conn = c
		ss.online.Store(true)
		ss.principal = c.principal
		ss.version = cp.ProtocolVersion
		ss.expiry = expiry
		ss.disconnectedAt = time.Time{}
		s.saveSession(ss)
		ss.mu.Unlock()
		s.mu.Unlock()
		c.sess = ss
		if endedWill != nil {
			s.publishWill(endedWill)
		}
		if err := s.waitDurable(); err != nil {
			s.log.Error("session not stored", "client", id, "err", err)
			return false, c.refuse(cp.ProtocolVersion, packet.ServerUnavailable, packet.V3ServerUnavailable, "store unavailable")
		}
		return present, nil
	}
}

// willMessage builds the will from a CONNECT.
func willMessage(cp *connectPacket, now time.Time) *Message {
	p := &packet.Publish{
		QoS:        cp.WillQoS,
		Retain:     cp.WillRetain,
		Topic:      cp.WillTopic,
		Payload:    cp.WillPayload,
		Properties: cp.WillProperties,
	}
	m := messageFromPublish(p, cp.ClientID, now)
	return m
}

// endLocked ends a session: it leaves the session table and the
// subscription trie, and its pending will (if any) is returned for
// publishing. Callers hold s.mu and the session is offline.
func (s *Server) endLocked(ss *session) *Message {
	ss.mu.Lock()
	ss.ended = true
	will := ss.will
	ss.will = nil
	ss.stopTimers()
	ss.queue, ss.qhead, ss.qbytes = nil, 0, 0
	if ss.stored {
		s.apply(store.Op{Kind: store.DeleteSession, ClientID: ss.id})
		ss.stored = false
	}
	ss.mu.Unlock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
		s.index.CompareAndDelete(ss.id, ss)
	}
	s.trie.RemoveClient(ss.id)
	return will
}

// detach releases the session of a closing connection and applies the
// will and session-expiry rules.
func (s *Server) detach(c *conn) {
	ss := c.sess
	if ss == nil {
		return
	}
	ss.mu.Lock()
	if ss.conn != c {
		ss.mu.Unlock()
		return
	}
	ss.conn = nil
	ss.online.Store(false)
	var willNow *Message
	if ss.will != nil {
		delay := ss.willDelay
		if ss.expiry < delay {
			delay = ss.expiry
		}
		if delay == 0 {
			willNow, ss.will = ss.will, nil
		} else {
			ss.willTimer = time.AfterFunc(time.Duration(delay)*time.Second, func() { s.fireWill(ss) })
		}
	}
	endNow := ss.expiry == 0
	if !endNow && ss.expiry != neverExpire {
		ss.expTimer = time.AfterFunc(time.Duration(ss.expiry)*time.Second, func() { s.expire(ss) })
	}
	ss.disconnectedAt = time.Now()
	if !endNow {
		s.saveSession(ss)
	}
	ss.mu.Unlock()
	if willNow != nil {
		s.publishWill(willNow)
	}
	if endNow {
		s.expire(ss)
	}
}

// fireWill publishes a delayed will whose delay has passed.
func (s *Server) fireWill(ss *session) {
	ss.mu.Lock()
	if ss.conn != nil || ss.ended {
		ss.mu.Unlock()
		return
	}
	will := ss.will
	ss.will = nil
	ss.willTimer = nil
	if will != nil && ss.stored {
		s.saveSession(ss) // the will is gone; a restart must not send it again
	}
	ss.mu.Unlock()
	if will != nil {
		s.publishWill(will)
	}
}

// expire ends an offline session whose expiry interval has passed.
func (s *Server) expire(ss *session) {
	s.mu.Lock()
	ss.mu.Lock()
	live := ss.conn != nil || ss.ended || s.sessions[ss.id] != ss
	ss.mu.Unlock()
	if live {
		s.mu.Unlock()
		return
	}
	will := s.endLocked(ss)
	s.mu.Unlock()
	if will != nil {
		s.publishWill(will)
	}
}

// publishWill publishes a will message.
func (s *Server) publishWill(m *Message) {
	m.Created = time.Now()
	var scratch []topic.Subscription
	s.publish(m, &scratch)
}

// resume redelivers unacknowledged messages in order (PUBLISH with DUP,
// or PUBREL), then whatever is queued, after CONNACK.
func (s *Server) resume(c *conn, present bool) {
	ss := c.sess
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if present {
		for _, om := range ss.inflightInOrder() {
			switch om.state {
			case awaitAck:
				if (om.qos == 1 && om.msg.expired(now)) || !c.writePublish(&om.delivery, om.id, true, now) {
					delete(ss.inflight, om.id)
					if ss.expiry > 0 {
						s.apply(deleteDelivery(ss.id, om.seq))
					}
				}
			case awaitComp:
				c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: om.id})
			}
		}
	}
	s.pump(ss, c, now)
}

// pump moves queued messages into flight while the client's window
// allows. Callers hold ss.mu.
func (s *Server) pump(ss *session, c *conn, now time.Time) {
	if c == nil {
		return
	}
	limit := c.outLimit()
	for len(ss.inflight) < limit {
		d, ok := ss.dequeue()
		if !ok {
			return
		}
		if d.msg.expired(now) {
			if ss.expiry > 0 {
				s.apply(deleteDelivery(ss.id, d.seq))
			}
			continue
		}
		s.sendNew(ss, c, d, now)
	}
}

// sendNew sends a QoS 1/2 delivery under a fresh packet id. Callers hold
// ss.mu.
//
// A QoS 2 message to a persistent session is sent only once its packet id
// is durable, so that after a restart it is sent again under the same id
// (with DUP) and never as a new message: exactly once survives a crash.
func (s *Server) sendNew(ss *session, c *conn, d delivery, now time.Time) {
	id := ss.allocID()
	om := &outMsg{delivery: d, id: id, state: awaitAck}
	ss.inflight[id] = om
	if d.qos == 2 && ss.expiry > 0 && !s.memStore {
		s.apply(putDelivery(ss.id, &om.delivery, store.StateAwaitAck, id))
		s.st.Sync(func(err error) {
			if err != nil {
				s.log.Error("QoS 2 delivery not stored; sending anyway", "client", ss.id, "err", err)
			}
			if !c.writePublish(&om.delivery, id, false, time.Now()) {
				go s.dropInflight(ss, om)
			}
		})
		return
	}
	if !c.writePublish(&om.delivery, id, false, now) {
		delete(ss.inflight, id)
		if ss.expiry > 0 {
			s.apply(deleteDelivery(ss.id, d.seq))
		}
	}
}

// dropInflight forgets an in-flight message that could not be sent to its
// client (larger than the client accepts).
func (s *Server) dropInflight(ss *session, om *outMsg) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.inflight[om.id] != om {
		return
	}
	delete(ss.inflight, om.id)
	if ss.expiry > 0 {
		s.apply(deleteDelivery(ss.id, om.seq))
	}
	s.pump(ss, ss.conn, time.Now())
}

// outLimit is how many QoS 1/2 messages may be unacknowledged at once.
func (c *conn) outLimit() int {
	return int(min(c.clientRecvMax, c.s.limits.maxInflight))
}

// mayTakeOver reports whether principal p may resume or take over a session
// owned by owner: only the same identity may, so a device with valid
// credentials cannot steal another device's session by reusing its client
// id. Sessions of anonymous clients belong to no one.
func mayTakeOver(owner, p *auth.Principal) bool {
	if owner == nil || owner.ID == "" {
		return true
	}
	return owner.Equal(p)
}
