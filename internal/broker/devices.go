package broker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"moat/internal/admin"
	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/packet"
	"moat/internal/pki"
	"moat/internal/registry"
	"moat/internal/tlspolicy"
)

// loadRegistryKey loads the master key for the device registry: the file
// when it exists, else $MOAT_MASTER_KEY. ok is false when there is none.
func loadRegistryKey(cfg *config.Config) (mk *registry.MasterKey, ok bool, err error) {
	if _, err := os.Stat(cfg.MasterKeyFile); err == nil {
		mk, err := registry.LoadMasterKeyFile(cfg.MasterKeyFile)
		return mk, err == nil, err
	}
	if os.Getenv(registry.DefaultMasterKeyEnv) != "" {
		mk, err := registry.MasterKeyFromEnv(registry.DefaultMasterKeyEnv)
		return mk, err == nil, err
	}
	return nil, false, nil
}

// openDevices opens the device registry when the configuration uses it
// ([devices] enabled, or by default when a master key is available) and
// puts it first in the authentication chain and in the ACL.
func (s *Server) openDevices() error {
	en := s.cfg.Devices.Enabled
	if en != nil && !*en {
		return nil
	}
	mk, ok, err := loadRegistryKey(s.cfg)
	if err != nil {
		return fmt.Errorf("broker: device registry: master key: %w", err)
	}
	if !ok {
		if en != nil && *en {
			return fmt.Errorf("broker: [devices] enabled but no master key: create %s (`moat pki init` does) or set $%s", s.cfg.MasterKeyFile, registry.DefaultMasterKeyEnv)
		}
		return nil
	}
	reg, err := registry.Open(filepath.Join(s.cfg.DataDir, "registry.db"), mk, s.log)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	s.reg = reg
	s.authn = &registry.Authenticator{Registry: reg, Next: s.authn}
	s.authz = auth.AllOf(s.authz, reg.Authorizer())
	// A disabled or removed device, or a rotated credential, ends the
	// device's live connections (MQTT 5: 0x98 Administrative action).
	reg.OnChange(func(id string) { s.DisconnectDevice(id) })
	return nil
}

// DisconnectDevice closes every connection the registry authenticated as
// device id (MQTT 5 reason 0x98). Principals that only share the name are
// left alone.
func (s *Server) DisconnectDevice(id string) int {
	return s.disconnectWhere(func(c *conn) bool {
		return c.principal != nil && c.principal.Attrs[registry.AttrDevice] == id
	}, packet.AdministrativeAction)
}

// Registry returns the device registry, or nil.
func (s *Server) Registry() *registry.Registry { return s.reg }

// adminClients adapts the broker to the admin API.
type adminClients struct{ s *Server }

func (a adminClients) Clients() []admin.ClientInfo {
	cs := a.s.Clients()
	out := make([]admin.ClientInfo, len(cs))
	for i, c := range cs {
		out[i] = admin.ClientInfo(c)
	}
	return out
}

// AlarmList reports the broker's alarms to the admin API.
func (a adminClients) AlarmList() any {
	al := a.s.Alarms()
	if al == nil {
		al = []Alarm{}
	}
	return al
}

func (a adminClients) Disconnect(id string) bool {
	return a.s.Disconnect(id, packet.AdministrativeAction)
}

// loadTokens reads the hashed admin tokens: "name:sha256hex" per line.
func loadTokens(path string) ([]admin.Token, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []admin.Token
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, hash, ok := strings.Cut(l, ":")
		if !ok || name == "" || len(hash) != 64 {
			return nil, fmt.Errorf("%s:%d: want name:sha256hex", path, n)
		}
		out = append(out, admin.Token{Name: name, SHA256: strings.ToLower(hash)})
	}
	return out, sc.Err()
}

// startAdmin starts the HTTPS admin API when the registry is on and a
// certificate is available.
func (s *Server) startAdmin() error {
	a := s.cfg.Admin
	if s.reg == nil || (a.Enabled != nil && !*a.Enabled) {
		return nil
	}
	cert, key := a.Cert, a.Key
	if cert == "" {
		if s.ca == nil {
			if a.Enabled != nil && *a.Enabled {
				return errors.New("broker: [admin] enabled but no cert and no built-in CA to issue one")
			}
			s.log.Info("admin API off: no certificate configured and no built-in CA")
			return nil
		}
		dir := filepath.Join(s.cfg.DataDir, "admin")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		cert, key = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
		req := pki.ServerRequest{DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
		if _, err := s.ca.RenewServer(cert, key, req, 0); err != nil {
			return fmt.Errorf("broker: admin certificate: %w", err)
		}
	}
	opts := tlspolicy.Options{
		Certs:      []tlspolicy.CertSource{{CertFile: cert, KeyFile: key}},
		MinVersion: 0x0304, // TLS 1.3: only operator tools talk to it
		ALPN:       []string{},
	}
	if len(a.ClientCA) > 0 {
		opts.ClientAuth = "optional"
		opts.ClientCAFiles = a.ClientCA
	}
	pol, err := tlspolicy.New(opts, s.log.With("listener", "admin"))
	if err != nil {
		return fmt.Errorf("broker: admin: %w", err)
	}
	tokens, err := loadTokens(a.TokensFile)
	if err != nil {
		return fmt.Errorf("broker: admin tokens: %w", err)
	}
	var audit io.Writer
	if a.AuditLog != "" {
		if err := os.MkdirAll(filepath.Dir(a.AuditLog), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(a.AuditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("broker: admin audit log: %w", err)
		}
		s.auditFile = f
		audit = f
	}
	srv, err := admin.New(admin.Options{
		Registry:       s.reg,
		Clients:        adminClients{s},
		TLSConfig:      pol.TLSConfig(),
		Tokens:         tokens,
		AdminCertNames: a.CertNames,
		Audit:          audit,
		Log:            s.log.With("component", "admin"),
		Metrics:        s.MetricsHandler(),
	})
	if err != nil {
		if len(tokens) == 0 && len(a.CertNames) == 0 {
			s.log.Warn("admin API off: no tokens and no admin certificates (moat admin token create NAME)", "tokens_file", a.TokensFile)
			return nil
		}
		return fmt.Errorf("broker: admin: %w", err)
	}
	ln, err := admin.Listen(a.Address, a.AllowRemote)
	if err != nil {
		return fmt.Errorf("broker: admin: %w", err)
	}
	s.mu.Lock()
	s.admin, s.adminAddr, s.adminLn = srv, ln.Addr(), ln
	s.mu.Unlock()
	s.log.Info("admin API listening", "address", "https://"+ln.Addr().String(), "tokens", len(tokens))
	return nil
}

// AdminAddr returns the admin API's address, or nil.
func (s *Server) AdminAddr() net.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.adminAddr
}
