package broker

import (
	"fmt"
	"strings"
	"time"

	"moat/internal/auth"
	"moat/internal/packet"
	"moat/internal/store"
	"moat/internal/topic"
)

// apply submits writes to the store and notes that there are writes a
// following acknowledgement must wait for.
func (s *Server) apply(ops ...store.Op) {
	if s.memStore {
		return
	}
	s.applied.Add(1)
	s.st.Apply(ops...)
}

// waitDurable blocks until everything submitted so far is durable.
func (s *Server) waitDurable() error {
	if s.memStore {
		return nil
	}
	done := make(chan error, 1)
	s.st.Sync(func(err error) { done <- err })
	return <-done
}

// storedMessage converts a message for the store.
func storedMessage(m *Message) *store.Message {
	sm := &store.Message{
		Topic:   m.Topic,
		Payload: m.Payload,
		QoS:     m.QoS,
		Retain:  m.Retain,
		From:    m.From,
		Created: m.Created,
		Expiry:  m.Expiry,
	}
	p := &m.Props
	if p.Has(packet.PropPayloadFormat) {
		sm.HasFormat, sm.PayloadFormat = true, p.PayloadFormat
	}
	if p.Has(packet.PropContentType) {
		sm.HasContentType, sm.ContentType = true, p.ContentType
	}
	if p.Has(packet.PropResponseTopic) {
		sm.HasResponse, sm.ResponseTopic = true, p.ResponseTopic
	}
	if p.Has(packet.PropCorrelationData) {
		sm.HasCorrelation, sm.CorrelationData = true, p.CorrelationData
	}
	for _, u := range p.User {
		sm.User = append(sm.User, store.UserProperty{Key: u.Key, Value: u.Value})
	}
	return sm
}

// messageFromStore converts a stored message back.
func messageFromStore(sm *store.Message) *Message {
	m := &Message{
		Topic:   sm.Topic,
		Payload: sm.Payload,
		QoS:     sm.QoS,
		Retain:  sm.Retain,
		From:    sm.From,
		Created: sm.Created,
		Expiry:  sm.Expiry,
	}
	p := &m.Props
	if sm.HasFormat {
		p.PayloadFormat = sm.PayloadFormat
		p.Set(packet.PropPayloadFormat)
	}
	if sm.HasContentType {
		p.ContentType = sm.ContentType
		p.Set(packet.PropContentType)
	}
	if sm.HasResponse {
		p.ResponseTopic = sm.ResponseTopic
		p.Set(packet.PropResponseTopic)
	}
	if sm.HasCorrelation {
		p.CorrelationData = sm.CorrelationData
		p.Set(packet.PropCorrelationData)
	}
	for _, u := range sm.User {
		p.User = append(p.User, packet.UserProperty{Key: u.Key, Value: u.Value})
	}
	if len(p.User) > 0 {
		p.Set(packet.PropUserProperty)
	}
	return m
}

// putDelivery is the write that stores an outbound message of a session.
func putDelivery(clientID string, d *delivery, state byte, id uint16) store.Op {
	var sm *store.Message
	if d.msg != nil {
		sm = storedMessage(d.msg)
	} else {
		sm = &store.Message{} // PUBREL sent: only the id matters
	}
	sm.Seq = d.seq
	sm.State = state
	sm.PacketID = id
	sm.DeliverQoS = d.qos
	sm.DeliverRet = d.retain
	sm.SubIDs = d.subIDs
	return store.Op{Kind: store.PutMessage, ClientID: clientID, Message: sm}
}

func deleteDelivery(clientID string, seq uint64) store.Op {
	return store.Op{Kind: store.DeleteMessage, ClientID: clientID, Seq: seq}
}

// sessionRecord builds the stored form of a session. Callers hold ss.mu.
func (s *Server) sessionRecord(ss *session) *store.Session {
	rec := &store.Session{
		ClientID:       ss.id,
		Version:        ss.version,
		Expiry:         ss.expiry,
		DisconnectedAt: ss.disconnectedAt,
		WillDelay:      ss.willDelay,
	}
	if p := ss.principal; p != nil {
		rec.Owner = store.Principal{ID: p.ID, Method: string(p.Method), Username: p.Username}
	}
	for _, sub := range s.trie.ClientSubscriptions(ss.id) {
		rec.Subscriptions = append(rec.Subscriptions, store.Subscription{
			Filter:            sub.Filter,
			Group:             sub.Group,
			QoS:               sub.QoS,
			NoLocal:           sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished,
			RetainHandling:    sub.RetainHandling,
			SubID:             sub.SubID,
		})
	}
	if ss.will != nil {
		rec.Will = storedMessage(ss.will)
	}
	return rec
}

// saveSession writes the session record of a persistent session, or
// deletes a stored one that is no longer persistent. Callers hold ss.mu.
func (s *Server) saveSession(ss *session) {
	if ss.expiry == 0 {
		if ss.stored {
			s.apply(store.Op{Kind: store.DeleteSession, ClientID: ss.id})
			ss.stored = false
		}
		return
	}
	s.apply(store.Op{Kind: store.PutSession, ClientID: ss.id, Session: s.sessionRecord(ss)})
	ss.stored = true
}

// persistRetained records a retained message change. $SYS topics are
// regenerated at start and never stored.
func (s *Server) persistRetained(m *Message) {
	if s.memStore || strings.HasPrefix(m.Topic, "$SYS/") {
		return
	}
	if len(m.Payload) == 0 {
		s.apply(store.Op{Kind: store.DeleteRetained, Topic: m.Topic})
		return
	}
	s.apply(store.Op{Kind: store.PutRetained, Message: storedMessage(m)})
}

// restore loads the store's content: retained messages, then sessions,
// which all start offline. Sessions that were connected when the broker
// stopped are treated as disconnected now: their wills follow the usual
// delay, and their expiry starts now.
func (s *Server) restore() error {
	now := time.Now()
	var nret, nsess, nmsg, nexp int
	// Clean-up writes found while loading are applied once the whole
	// store has loaded: a store that fails to load is not modified.
	var cleanup []store.Op
	err := s.st.Load(func(sm *store.Message) error {
		m := messageFromStore(sm)
		if m.expired(now) {
			cleanup = append(cleanup, store.Op{Kind: store.DeleteRetained, Topic: m.Topic})
			nexp++
			return nil
		}
		s.retained.Set(m.Topic, m)
		nret++
		return nil
	}, func(rec *store.Session, msgs []*store.Message, inbound []uint16) error {
		ss := newSession(rec.ClientID)
		ss.version = rec.Version
		ss.expiry = rec.Expiry
		ss.stored = true
		ss.principal = &auth.Principal{ID: rec.Owner.ID, Method: auth.Method(rec.Owner.Method), Username: rec.Owner.Username}
		ss.disconnectedAt = rec.DisconnectedAt
		if ss.disconnectedAt.IsZero() {
			ss.disconnectedAt = now
		}
		for _, sub := range rec.Subscriptions {
			s.trie.Add(topic.Subscription{
				ClientID:          rec.ClientID,
				Filter:            sub.Filter,
				Group:             sub.Group,
				QoS:               sub.QoS,
				NoLocal:           sub.NoLocal,
				RetainAsPublished: sub.RetainAsPublished,
				RetainHandling:    sub.RetainHandling,
				SubID:             sub.SubID,
			})
		}
		for _, sm := range msgs {
			d := delivery{qos: sm.DeliverQoS, retain: sm.DeliverRet, subIDs: sm.SubIDs, seq: sm.Seq}
			if sm.State != store.StateAwaitRel {
				d.msg = messageFromStore(sm)
			}
			ss.seq = max(ss.seq, sm.Seq)
			switch sm.State {
			case store.StateAwaitAck, store.StateAwaitRel:
				state := awaitAck
				if sm.State == store.StateAwaitRel {
					state = awaitComp
				}
				if _, dup := ss.inflight[sm.PacketID]; dup || sm.PacketID == 0 {
					return fmt.Errorf("%w: %s: session %q: bad packet id %d", store.ErrCorrupt, s.st.Path(), rec.ClientID, sm.PacketID)
				}
				ss.inflight[sm.PacketID] = &outMsg{delivery: d, id: sm.PacketID, state: state}
			default:
				if d.msg.expired(now) {
					cleanup = append(cleanup, deleteDelivery(rec.ClientID, d.seq))
					nexp++
					continue
				}
				ss.queue = append(ss.queue, d)
				ss.qbytes += d.msg.size()
			}
			nmsg++
		}
		for _, id := range inbound {
			ss.inQoS2[id] = struct{}{}
		}
		if rec.Will != nil {
			ss.will = messageFromStore(rec.Will)
			ss.willDelay = rec.WillDelay
		}
		s.sessions[ss.id] = ss
		s.index.Store(ss.id, ss)
		nsess++
		return nil
	})
	if err != nil {
		return err
	}
	if len(cleanup) > 0 {
		s.apply(cleanup...)
	}
	// Timers: wills and expiry run from the time of disconnection.
	for _, ss := range s.sessions {
		ss.mu.Lock()
		s.armOffline(ss, now)
		ss.mu.Unlock()
	}
	if nret+nsess > 0 {
		s.log.Info("state restored", "store", s.st.Path(), "sessions", nsess, "messages", nmsg, "retained", nret, "expired_dropped", nexp)
	}
	return nil
}

// armOffline starts the will-delay and expiry timers of an offline
// session, counting from its disconnection. Callers hold ss.mu.
func (s *Server) armOffline(ss *session, now time.Time) {
	since := now.Sub(ss.disconnectedAt)
	if ss.will != nil {
		delay := min(ss.willDelay, ss.expiry)
		wait := max(time.Duration(delay)*time.Second-since, 0)
		ss.willTimer = time.AfterFunc(wait, func() { s.fireWill(ss) })
	}
	if ss.expiry != neverExpire {
		wait := max(time.Duration(ss.expiry)*time.Second-since, 0)
		ss.expTimer = time.AfterFunc(wait, func() { s.expire(ss) })
	}
}
