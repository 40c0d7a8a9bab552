package broker

import (
	"crypto/tls"
	"sort"
	"time"

	"moat/internal/packet"
	"moat/internal/tlspsk"
)

// ClientInfo describes a connected client for operators.
type ClientInfo struct {
	ClientID        string    `json:"client_id"`
	Principal       string    `json:"principal"`
	PrincipalID     string    `json:"principal_id"`
	Method          string    `json:"method"`
	Remote          string    `json:"remote"`
	Listener        string    `json:"listener"`
	ProtocolVersion byte      `json:"protocol_version"`
	TLSVersion      string    `json:"tls_version,omitempty"`
	CipherSuite     string    `json:"cipher_suite,omitempty"`
	ConnectedAt     time.Time `json:"connected_at"`
}

// Clients lists the connected clients, sorted by client id.
func (s *Server) Clients() []ClientInfo {
	s.mu.RLock()
	out := make([]ClientInfo, 0, len(s.conns))
	for c := range s.conns {
		if !c.connected.Load() || c.principal == nil {
			continue
		}
		ci := ClientInfo{
			ClientID:        c.clientID,
			Principal:       c.principal.String(),
			PrincipalID:     c.principal.ID,
			Method:          string(c.principal.Method),
			Remote:          c.remote,
			Listener:        c.bl.cfg.Name,
			ProtocolVersion: c.version,
			ConnectedAt:     c.connectedAt,
		}
		if c.tlsVersion != 0 {
			ci.TLSVersion = tls.VersionName(c.tlsVersion)
			if c.principal.Method == "psk" {
				ci.CipherSuite = tlspsk.CipherSuiteName(c.tlsSuite)
			} else {
				ci.CipherSuite = tls.CipherSuiteName(c.tlsSuite)
			}
		}
		out = append(out, ci)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out
}

// Disconnect closes the connection of a client id; an MQTT 5 client is
// told the reason. It reports whether the client was connected.
func (s *Server) Disconnect(clientID string, code packet.ReasonCode) bool {
	ss := s.session(clientID)
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	c := ss.conn
	ss.mu.Unlock()
	if c == nil {
		return false
	}
	s.log.Info("disconnecting client", "client", clientID, "reason", code.String())
	c.kick(code)
	return true
}

// DisconnectPrincipal closes every connection authenticated as the given
// identity (any method when method is empty), with MQTT 5 reason
// Administrative action; used when a device is disabled, removed or its
// credential rotated. It returns how many connections were closed.
func (s *Server) DisconnectPrincipal(id, method string) int {
	s.mu.RLock()
	var victims []*conn
	for c := range s.conns {
		if c.connected.Load() && c.principal != nil && c.principal.ID == id && (method == "" || string(c.principal.Method) == method) {
			victims = append(victims, c)
		}
	}
	s.mu.RUnlock()
	for _, c := range victims {
		s.log.Info("disconnecting client", "client", c.clientID, "principal", c.principal.String(), "reason", packet.AdministrativeAction.String())
		c.kick(packet.AdministrativeAction)
	}
	return len(victims)
}
