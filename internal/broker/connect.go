package broker

import (
	"errors"
	"time"

	"moat/internal/auth"
	"moat/internal/listener"
	"moat/internal/packet"
	"moat/internal/registry"
)

// connectError ends a connection during CONNECT: ack is sent first when
// set (a CONNACK with a failure code), then the connection is closed.
type connectError struct {
	ack *packet.Connack
	ver byte
	msg string
}

func (e *connectError) Error() string { return "connect refused: " + e.msg }

// connect runs the CONNECT steps: read, decode, check, authenticate, attach
// the session, acknowledge, resume delivery.
func (c *conn) connect() error {
	cp, err := c.readConnect()
	if err == nil {
		err = c.checkConnect(cp)
	}
	if err == nil {
		err = c.authenticate(cp)
	}
	var present bool
	if err == nil {
		present, err = c.s.attach(c, cp)
	}
	if err != nil {
		var ce *connectError
		if errors.As(err, &ce) {
			c.s.log.Info("connection refused", "remote", c.remote, "client", cp.clientIDOrEmpty(), "reason", ce.msg)
			if ce.ack != nil {
				c.version = ce.ver
				c.send(ce.ack)
			}
			return errKicked
		}
		return err
	}
	c.connectedAt = time.Now()
	c.connected.Store(true)
	c.s.stats.connected.Add(1)
	c.s.stats.totalConn.Add(1)
	c.sendConnack(cp, present)
	c.s.log.Debug("client connected", "client", c.clientID, "remote", c.remote,
		"principal", c.principal.String(), "version", c.version, "session_present", present)
	c.s.resume(c, present)
	return nil
}

// clientIDOrEmpty tolerates a nil CONNECT in log lines.
func (p *connectPacket) clientIDOrEmpty() string {
	if p == nil || p.Connect == nil {
		return ""
	}
	return p.ClientID
}

// connectPacket is a decoded CONNECT plus what the steps decided.
type connectPacket struct {
	*packet.Connect
	assignedID bool
	keepAlive  uint16
}

func (c *conn) refuse(ver byte, code packet.ReasonCode, v3code byte, msg string) error {
	ack := &packet.Connack{ReasonCode: code}
	if ver != packet.V5 {
		ack.ReasonCode = packet.ReasonCode(v3code)
	}
	return &connectError{ack: ack, ver: ver, msg: msg}
}

// readConnect reads the first packet, which must be a valid CONNECT.
func (c *conn) readConnect() (*connectPacket, error) {
	c.nc.SetReadDeadline(c.deadline)
	fh, body, err := c.readPacket()
	if err != nil {
		var re *reasonError
		if errors.As(err, &re) {
			return nil, &connectError{msg: re.msg}
		}
		var pe *packet.Error
		if errors.As(err, &pe) {
			return nil, &connectError{msg: pe.Error()}
		}
		return nil, err
	}
	if fh.Type != packet.CONNECT {
		return nil, &connectError{msg: "first packet is " + fh.Type.String() + ", not CONNECT"}
	}
	cp, err := packet.DecodeConnect(body)
	if err != nil {
		var pe *packet.Error
		if errors.As(err, &pe) {
			if pe.Code == packet.UnsupportedProtocolVersion {
				ver := peekVersion(body)
				return nil, c.refuse(ver, packet.UnsupportedProtocolVersion, packet.V3UnacceptableProtocolVersion, pe.Msg)
			}
			if peekVersion(body) == packet.V5 {
				return nil, c.refuse(packet.V5, pe.Code, 0, pe.Msg)
			}
			return nil, &connectError{msg: pe.Msg}
		}
		return nil, err
	}
	c.version = cp.ProtocolVersion
	return &connectPacket{Connect: cp}, nil
}

// peekVersion guesses the protocol level of an undecodable CONNECT so the
// refusal is in a format the client reads: levels above 5 get an MQTT 5
// CONNACK, 3 and 4 a 3.1.1 one.
func peekVersion(body []byte) byte {
	if len(body) < 2 {
		return packet.V311
	}
	n := int(body[0])<<8 | int(body[1])
	if len(body) < 2+n+1 {
		return packet.V311
	}
	v := body[2+n]
	if v >= packet.V5 {
		return packet.V5
	}
	return packet.V311
}

// checkConnect applies the broker's rules to the CONNECT fields.
func (c *conn) checkConnect(cp *connectPacket) error {
	l := &c.s.limits
	v := cp.ProtocolVersion
	if cp.ClientID == "" {
		if v != packet.V5 && !cp.CleanStart {
			return c.refuse(v, packet.ClientIdentifierNotValid, packet.V3IdentifierRejected, "empty client id without clean session")
		}
		cp.ClientID = randomClientID()
		cp.assignedID = true
	}
	if len(cp.ClientID) > l.maxClientIDLen {
		return c.refuse(v, packet.ClientIdentifierNotValid, packet.V3IdentifierRejected, "client id too long")
	}
	if v == packet.V31 && len(cp.ClientID) > 23 && !cp.assignedID {
		// MQTT 3.1 limits client ids to 23 bytes; servers may accept more.
		c.s.log.Debug("MQTT 3.1 client id longer than 23 bytes accepted", "client", cp.ClientID)
	}
	if cp.Properties.Has(packet.PropAuthMethod) {
		return c.refuse(v, packet.BadAuthenticationMethod, packet.V3NotAuthorized, "authentication method "+quote(cp.Properties.AuthMethod)+" not supported")
	}
	if cp.WillFlag {
		if err := packet.ValidTopicName(cp.WillTopic); err != nil || len(cp.WillTopic) > l.maxTopicLen {
			return c.refuse(v, packet.TopicNameInvalid, packet.V3NotAuthorized, "invalid will topic")
		}
		if cp.WillQoS > l.maxQoS {
			return c.refuse(v, packet.QoSNotSupported, packet.V3NotAuthorized, "will QoS above maximum")
		}
		if cp.WillRetain && !l.retain {
			return c.refuse(v, packet.RetainNotSupported, packet.V3NotAuthorized, "retained will not supported")
		}
	}
	cp.keepAlive = cp.KeepAlive
	if l.maxKeepAlive > 0 && (cp.keepAlive == 0 || cp.keepAlive > l.maxKeepAlive) && v == packet.V5 {
		cp.keepAlive = l.maxKeepAlive
	}
	c.keepAlive = time.Duration(cp.keepAlive) * time.Second * 3 / 2
	if c.keepAlive == 0 {
		// Without an MQTT keep alive only TCP's finds a dead peer;
		// listeners leave it off for the clients that have one.
		listener.EnableTCPKeepAlive(c.nc)
	}
	c.clientRecvMax = 65535
	c.clientMaxPkt = 0
	if v == packet.V5 {
		if cp.Properties.Has(packet.PropReceiveMaximum) {
			c.clientRecvMax = cp.Properties.ReceiveMaximum
		}
		if cp.Properties.Has(packet.PropMaximumPacketSize) {
			c.clientMaxPkt = cp.Properties.MaximumPacketSize
		}
		c.aliasMax = l.aliasMax // the table is made on first use
	}
	c.clientID = cp.ClientID
	return nil
}

// authenticate turns the CONNECT credentials into a Principal.
func (c *conn) authenticate(cp *connectPacket) error {
	v := cp.ProtocolVersion
	req := &auth.Request{
		Listener:       c.bl.cfg.Name,
		RemoteAddr:     c.nc.RemoteAddr(),
		ClientID:       cp.ClientID,
		Username:       cp.Username,
		HasUsername:    cp.UsernameFlag,
		Password:       cp.Password,
		HasPassword:    cp.PasswordFlag,
		AllowAnonymous: c.s.cfg.AnonymousAllowed(c.bl.cfg),
	}
	ti, leaf, err := c.transportIdentity()
	if err != nil {
		c.s.log.Info("client certificate has no usable identity", "remote", c.remote, "identity", c.bl.cfg.TLS.Identity, "err", err)
		return c.refuse(v, packet.NotAuthorized, packet.V3NotAuthorized, "client certificate has no "+c.bl.cfg.TLS.Identity)
	}
	if ti == nil {
		if ti, err = c.proxyIdentity(); err != nil {
			c.s.log.Info("client refused: certificate information from the load balancer", "remote", c.remote, "err", err)
			return c.refuse(v, packet.NotAuthorized, packet.V3NotAuthorized, "client certificate refused")
		}
	}
	req.Transport = ti
	ctx, cancel := c.ctxFor()
	defer cancel()
	if leaf != nil {
		// The registry matches certificates by issuer and serial or by
		// subject too, not only by fingerprint.
		ctx = registry.WithPeerCertificate(ctx, leaf)
	}
	p, err := c.s.authn.Authenticate(ctx, req)
	clear(cp.Password)
	if err != nil {
		c.s.stats.authFailed.Add(1)
		if errors.Is(err, auth.ErrNotAuthorized) {
			return c.refuse(v, packet.NotAuthorized, packet.V3NotAuthorized, "not authorized")
		}
		return c.refuse(v, packet.BadUserNameOrPassword, packet.V3BadUsernameOrPassword, "bad user name or password")
	}
	if cp.WillFlag && !c.s.authz.CanPublish(p, cp.ClientID, cp.WillTopic) {
		return c.refuse(v, packet.NotAuthorized, packet.V3NotAuthorized, "will topic not authorized")
	}
	c.s.stats.authOK.Add(1)
	c.principal = p
	return c.bindClientID(cp)
}

// sendConnack acknowledges a successful CONNECT with the server's limits.
func (c *conn) sendConnack(cp *connectPacket, present bool) {
	ack := &packet.Connack{SessionPresent: present}
	if c.version == packet.V5 {
		l := &c.s.limits
		pr := &ack.Properties
		pr.ReceiveMaximum = l.recvMax
		pr.Set(packet.PropReceiveMaximum)
		pr.MaximumPacketSize = l.maxPacket
		pr.Set(packet.PropMaximumPacketSize)
		pr.TopicAliasMaximum = l.aliasMax
		if l.aliasMax > 0 {
			pr.Set(packet.PropTopicAliasMaximum)
		}
		if l.maxQoS < 2 {
			pr.MaximumQoS = l.maxQoS
			pr.Set(packet.PropMaximumQoS)
		}
		if !l.retain {
			pr.RetainAvailable = 0
			pr.Set(packet.PropRetainAvailable)
		}
		if cp.assignedID {
			pr.AssignedClientID = cp.ClientID
			pr.Set(packet.PropAssignedClientID)
		}
		if cp.keepAlive != cp.KeepAlive {
			pr.ServerKeepAlive = cp.keepAlive
			pr.Set(packet.PropServerKeepAlive)
		}
		req := cp.Properties.SessionExpiry
		if got := c.s.capSessionExpiry(req); got != req {
			pr.SessionExpiry = got
			pr.Set(packet.PropSessionExpiry)
		}
	}
	c.send(ack)
}

// capSessionExpiry applies the configured maximum session expiry.
func (s *Server) capSessionExpiry(v uint32) uint32 {
	if s.limits.maxSessionExp > 0 && v > s.limits.maxSessionExp {
		return s.limits.maxSessionExp
	}
	return v
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return "\"" + s + "\""
}
