package broker

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/packet"
	"moat/internal/store"
	"moat/internal/topic"
)

// publish stores a retained message and routes m to every matching
// subscription. scratch is reused between calls by the caller. It returns
// the number of sessions the message was delivered or queued to.
func (s *Server) publish(m *Message, scratch *[]topic.Subscription) int {
	if m.Retain && s.limits.retain {
		if len(m.Payload) == 0 {
			s.retained.Delete(m.Topic)
		} else {
			s.retained.Set(m.Topic, m)
		}
		s.persistRetained(m)
	}
	subs := s.trie.Match(m.Topic, (*scratch)[:0], s.isOnline)
	*scratch = subs
	if len(subs) == 0 {
		return 0
	}
	if len(subs) > 1 {
		// Group each client's overlapping subscriptions together; shared
		// subscriptions are delivered on their own.
		slices.SortFunc(subs, func(a, b topic.Subscription) int {
			if c := cmp.Compare(a.Group, b.Group); c != 0 {
				return c
			}
			return cmp.Compare(a.ClientID, b.ClientID)
		})
	}
	now := time.Now()
	n := 0
	for i := 0; i < len(subs); {
		j := i + 1
		if subs[i].Group == "" {
			for j < len(subs) && subs[j].Group == "" && subs[j].ClientID == subs[i].ClientID {
				j++
			}
		}
		if s.deliverMatched(m, subs[i:j], now) {
			n++
		}
		i = j
	}
	return n
}

// deliverMatched delivers m once to the client owning subs (one client's
// overlapping subscriptions, or one shared-group member): at the highest
// granted QoS, with every subscription identifier.
func (s *Server) deliverMatched(m *Message, subs []topic.Subscription, now time.Time) bool {
	clientID := subs[0].ClientID
	var qos byte
	var rap, any bool
	var ids []uint32
	for i := range subs {
		sub := &subs[i]
		if sub.NoLocal && sub.Group == "" && m.From == clientID {
			continue
		}
		any = true
		qos = max(qos, sub.QoS)
		rap = rap || sub.RetainAsPublished
		if sub.SubID != 0 {
			ids = append(ids, sub.SubID)
		}
	}
	if !any {
		return false
	}
	ss := s.session(clientID)
	if ss == nil {
		return false
	}
	if !s.authz.CanReceive(ss.principalSnapshot(), clientID, m.Topic) {
		return false
	}
	d := delivery{msg: m, qos: min(qos, m.QoS), retain: rap && m.Retain, subIDs: ids}
	s.deliver(ss, d, now)
	return true
}

// deliver sends d to the session's connection, or queues it (QoS 1/2) when
// the session is offline or its window is full. QoS 1/2 deliveries to a
// persistent session are written to the store.
func (s *Server) deliver(ss *session, d delivery, now time.Time) {
	if d.msg.expired(now) {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended {
		return
	}
	c := ss.conn
	if d.qos == 0 {
		if c == nil {
			s.stats.dropped.Add(1)
			return
		}
		c.writePublish(&d, 0, false, now)
		return
	}
	ss.seq++
	d.seq = ss.seq
	persist := ss.expiry > 0
	if c != nil && ss.queued() == 0 && len(ss.inflight) < c.outLimit() {
		if persist && d.qos == 1 {
			// QoS 1 is stored as queued: after a restart it is simply
			// sent again (a duplicate is allowed at QoS 1).
			s.apply(putDelivery(ss.id, &d, store.StateQueued, 0))
		}
		s.sendNew(ss, c, d, now)
		return
	}
	kept, dropped := ss.enqueue(d, s.limits.maxQueued, s.limits.maxQueuedBytes, s.limits.overflow == config.OverflowDropOldest)
	if kept && persist {
		s.apply(putDelivery(ss.id, &d, store.StateQueued, 0))
	}
	for i := range dropped {
		s.stats.dropped.Add(1)
		if persist {
			s.apply(deleteDelivery(ss.id, dropped[i].seq))
		}
	}
	if !kept {
		s.stats.dropped.Add(1)
		if s.limits.overflow == config.OverflowDisconnect && c != nil {
			s.log.Warn("session queue full: disconnecting client", "client", ss.id, "queued", ss.queued())
			c.kick(packet.QuotaExceeded)
		}
	}
}

// principalSnapshot returns the session's Principal.
func (ss *session) principalSnapshot() *auth.Principal {
	ss.mu.Lock()
	p := ss.principal
	ss.mu.Unlock()
	return p
}

// writePublish encodes a PUBLISH for this connection's protocol version
// into the outbound buffer. It returns false when the message cannot be
// sent to this client (larger than its Maximum Packet Size, or a QoS 0
// message to a client too far behind), which counts as delivered-and-
// dropped.
func (c *conn) writePublish(d *delivery, id uint16, dup bool, now time.Time) bool {
	m := d.msg
	pub := packet.Publish{
		Dup:      dup,
		QoS:      d.qos,
		Retain:   d.retain,
		Topic:    m.Topic,
		PacketID: id,
		Payload:  m.Payload,
	}
	if c.version == packet.V5 {
		pub.Properties = m.Props
		if len(d.subIDs) > 0 {
			pub.Properties.SubscriptionIDs = d.subIDs
			pub.Properties.Set(packet.PropSubscriptionID)
		}
		if rem, ok := m.remaining(now); ok {
			pub.Properties.MessageExpiry = rem
			pub.Properties.Set(packet.PropMessageExpiry)
		}
	}
	c.wmu.Lock()
	if c.wclosing {
		c.wmu.Unlock()
		return true // stays inflight; redelivered on reconnect
	}
	if d.qos == 0 && len(c.wbuf) > c.s.limits.maxPending {
		c.wmu.Unlock()
		c.s.stats.dropped.Add(1)
		return false
	}
	start := len(c.wbuf)
	var err error
	c.wbuf, err = pub.Append(c.wbuf, c.version)
	if err != nil || (c.clientMaxPkt > 0 && uint32(len(c.wbuf)-start) > c.clientMaxPkt) {
		c.wbuf = c.wbuf[:start]
		c.wmu.Unlock()
		c.s.stats.dropped.Add(1)
		return false
	}
	c.wmu.Unlock()
	c.s.stats.msgsSent.Add(1)
	c.signal()
	return true
}

// handlePublish handles an inbound PUBLISH.
func (c *conn) handlePublish(fh packet.FixedHeader, body []byte) error {
	p := &c.pub
	if err := p.Decode(fh.Flags, body, c.version); err != nil {
		return err
	}
	s := c.s
	s.stats.msgsRecv.Add(1)
	if p.Properties.Has(packet.PropTopicAlias) {
		a := p.Properties.TopicAlias
		if a == 0 || a > c.aliasMax {
			return protoErr(packet.TopicAliasInvalid, "topic alias out of range")
		}
		if c.aliases == nil {
			// Most clients never use aliases: idle connections do not
			// carry the table.
			c.aliases = make([]string, int(c.aliasMax)+1)
		}
		if p.Topic == "" {
			p.Topic = c.aliases[a]
			if p.Topic == "" {
				return protoErr(packet.ProtocolError, "unknown topic alias")
			}
		} else {
			c.aliases[a] = p.Topic
		}
	} else if p.Topic == "" {
		return protoErr(packet.ProtocolError, "empty topic without topic alias")
	}
	if len(p.Topic) > s.limits.maxTopicLen {
		return protoErr(packet.TopicNameInvalid, "topic too long")
	}
	if p.QoS > s.limits.maxQoS {
		return protoErr(packet.QoSNotSupported, "QoS above maximum")
	}
	if p.Retain && !s.limits.retain {
		return protoErr(packet.RetainNotSupported, "retain not supported")
	}
	code := packet.Success
	switch {
	case strings.HasPrefix(p.Topic, "$SYS"), !s.authz.CanPublish(c.principal, c.clientID, p.Topic):
		code = packet.NotAuthorized
		s.log.Debug("publish not authorized", "client", c.clientID, "topic", p.Topic)
	case p.Properties.Has(packet.PropPayloadFormat) && p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload):
		code = packet.PayloadFormatInvalid
	}
	ss := c.sess
	if p.QoS == 2 {
		ss.mu.Lock()
		if _, dup := ss.inQoS2[p.PacketID]; dup {
			ss.mu.Unlock()
			c.send(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID})
			return nil
		}
		if len(ss.inQoS2) >= int(s.limits.recvMax) {
			ss.mu.Unlock()
			return protoErr(packet.ReceiveMaximumExceeded, "receive maximum exceeded")
		}
		if code < 0x80 {
			ss.inQoS2[p.PacketID] = struct{}{}
			if ss.expiry > 0 {
				s.apply(store.Op{Kind: store.PutInbound, ClientID: ss.id, PacketID: p.PacketID})
			}
		}
		ss.mu.Unlock()
	}
	if code == packet.Success {
		m := messageFromPublish(p, c.clientID, time.Now())
		if s.publish(m, &c.matchBuf) == 0 && c.version == packet.V5 {
			code = packet.NoMatchingSubscribers
		}
	}
	switch p.QoS {
	case 1:
		c.ackWhenDurable(&packet.Ack{PacketType: packet.PUBACK, PacketID: p.PacketID, ReasonCode: code})
	case 2:
		c.ackWhenDurable(&packet.Ack{PacketType: packet.PUBREC, PacketID: p.PacketID, ReasonCode: code})
	}
	return nil
}

// handleAck handles PUBACK, PUBREC, PUBREL and PUBCOMP.
func (c *conn) handleAck(a *packet.Ack) error {
	s := c.s
	ss := c.sess
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	persist := ss.expiry > 0
	switch a.PacketType {
	case packet.PUBREL:
		if _, ok := ss.inQoS2[a.PacketID]; !ok {
			c.send(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: a.PacketID, ReasonCode: packet.PacketIdentifierNotFound})
			return nil
		}
		delete(ss.inQoS2, a.PacketID)
		if persist {
			s.apply(store.Op{Kind: store.DeleteInbound, ClientID: ss.id, PacketID: a.PacketID})
		}
		c.ackWhenDurable(&packet.Ack{PacketType: packet.PUBCOMP, PacketID: a.PacketID})
		return nil
	case packet.PUBACK:
		om := ss.inflight[a.PacketID]
		if om == nil || om.qos != 1 {
			return nil // late or duplicate acknowledgement
		}
		delete(ss.inflight, a.PacketID)
		if persist {
			s.apply(deleteDelivery(ss.id, om.seq))
		}
	case packet.PUBREC:
		om := ss.inflight[a.PacketID]
		if om == nil || om.qos != 2 {
			c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID, ReasonCode: packet.PacketIdentifierNotFound})
			return nil
		}
		if om.state == awaitComp {
			c.send(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID})
			return nil
		}
		if a.ReasonCode >= 0x80 {
			delete(ss.inflight, a.PacketID)
			if persist {
				s.apply(deleteDelivery(ss.id, om.seq))
			}
			break
		}
		om.state = awaitComp
		om.msg = nil // delivered; only the id remains
		if persist {
			// PUBREL goes out only once "released" is durable: after a
			// restart the message must not be sent again.
			s.apply(putDelivery(ss.id, &om.delivery, store.StateAwaitRel, om.id))
		}
		c.ackWhenDurable(&packet.Ack{PacketType: packet.PUBREL, PacketID: a.PacketID})
		return nil
	case packet.PUBCOMP:
		om := ss.inflight[a.PacketID]
		if om == nil || om.state != awaitComp {
			return nil
		}
		delete(ss.inflight, a.PacketID)
		if persist {
			s.apply(deleteDelivery(ss.id, om.seq))
		}
	}
	s.pump(ss, c, now)
	return nil
}

// ackWhenDurable sends an acknowledgement once every write submitted so far
// is durable. Acknowledgements keep their order: once one waits, the ones
// after it wait too.
func (c *conn) ackWhenDurable(p packet.Packet) {
	s := c.s
	if s.memStore || (c.pendingAcks.Load() == 0 && s.applied.Load() == c.lastApplied) {
		c.send(p)
		return
	}
	c.lastApplied = s.applied.Load()
	c.pendingAcks.Add(1)
	s.st.Sync(func(err error) {
		if err != nil {
			// Not durable: say so instead of acknowledging.
			if a, ok := p.(*packet.Ack); ok && c.version == packet.V5 && (a.PacketType == packet.PUBACK || a.PacketType == packet.PUBREC) {
				a.ReasonCode = packet.ImplementationSpecificError
			} else {
				c.pendingAcks.Add(-1)
				c.kick(packet.UnspecifiedError)
				return
			}
		}
		c.send(p)
		c.pendingAcks.Add(-1)
	})
}

// handleSubscribe handles SUBSCRIBE: validate and authorise each filter,
// acknowledge, then send the matching retained messages.
func (c *conn) handleSubscribe(p *packet.Subscribe) error {
	s := c.s
	var subID uint32
	if p.Properties.Has(packet.PropSubscriptionID) && len(p.Properties.SubscriptionIDs) > 0 {
		subID = p.Properties.SubscriptionIDs[0]
	}
	codes := make([]packet.ReasonCode, len(p.Subscriptions))
	type retainedReq struct {
		filter string
		qos    byte
		rap    bool
	}
	var wantRetained []retainedReq
	for i, sub := range p.Subscriptions {
		fail := func(v5 packet.ReasonCode) {
			if c.version == packet.V5 {
				codes[i] = v5
			} else {
				codes[i] = 0x80
			}
		}
		if err := packet.ValidTopicFilter(sub.Filter); err != nil || len(sub.Filter) > s.limits.maxTopicLen {
			fail(packet.TopicFilterInvalid)
			continue
		}
		group, filter, shared := topic.ParseShared(sub.Filter)
		if shared && sub.NoLocal {
			return protoErr(packet.ProtocolError, "no local on a shared subscription")
		}
		if !s.authz.CanSubscribe(c.principal, c.clientID, filter) {
			s.log.Debug("subscribe not authorized", "client", c.clientID, "filter", sub.Filter)
			fail(packet.NotAuthorized)
			continue
		}
		qos := min(sub.QoS, s.limits.maxQoS)
		existed := s.trie.Add(topic.Subscription{
			ClientID:          c.clientID,
			Filter:            filter,
			Group:             group,
			QoS:               qos,
			NoLocal:           sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished,
			RetainHandling:    sub.RetainHandling,
			SubID:             subID,
		})
		codes[i] = packet.ReasonCode(qos)
		if !shared && s.limits.retain && (sub.RetainHandling == 0 || (sub.RetainHandling == 1 && !existed)) {
			wantRetained = append(wantRetained, retainedReq{filter: filter, qos: qos, rap: sub.RetainAsPublished})
		}
	}
	c.persistSubscriptions()
	c.send(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes})
	if len(wantRetained) == 0 {
		return nil
	}
	now := time.Now()
	var ids []uint32
	if subID != 0 {
		ids = []uint32{subID}
	}
	for _, r := range wantRetained {
		var msgs []*Message
		s.retained.Match(r.filter, func(_ string, m *Message) bool {
			msgs = append(msgs, m)
			return true
		})
		for _, m := range msgs {
			if m.expired(now) || !s.authz.CanReceive(c.principal, c.clientID, m.Topic) {
				continue
			}
			s.deliver(c.sess, delivery{msg: m, qos: min(r.qos, m.QoS), retain: true, subIDs: ids}, now)
		}
	}
	return nil
}

// handleUnsubscribe handles UNSUBSCRIBE.
func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) error {
	codes := make([]packet.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		group, filter, _ := topic.ParseShared(f)
		if c.s.trie.Remove(c.clientID, group, filter) {
			codes[i] = packet.Success
		} else {
			codes[i] = packet.NoSubscriptionExisted
		}
	}
	c.persistSubscriptions()
	c.send(&packet.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
	return nil
}

// persistSubscriptions stores the session's subscriptions and waits until
// they are durable, so SUBACK/UNSUBACK promise what a restart keeps.
func (c *conn) persistSubscriptions() {
	ss := c.sess
	ss.mu.Lock()
	persist := ss.expiry > 0
	if persist {
		c.s.saveSession(ss)
	}
	ss.mu.Unlock()
	if persist {
		if err := c.s.waitDurable(); err != nil {
			c.s.log.Error("subscriptions not stored", "client", c.clientID, "err", err)
		}
	}
}
