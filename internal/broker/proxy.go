package broker

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/proxyproto"
	"moat/internal/tlspolicy"
)

// proxyListener puts the PROXY protocol in front of a listener's socket.
func (s *Server) proxyListener(ln net.Listener, l *config.Listener) (net.Listener, error) {
	px := l.Proxy
	var trusted []netip.Prefix
	for _, t := range px.Trusted {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, aerr := netip.ParseAddr(t)
			if aerr != nil {
				return nil, fmt.Errorf("proxy: trusted %q: %w", t, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		trusted = append(trusted, p)
	}
	opts := proxyproto.Options{
		Trusted:       trusted,
		Required:      px.Required,
		HeaderTimeout: px.HeaderTimeout.Duration,
		CertTLV:       byte(px.CertTLV),
		Log:           s.log.With("listener", l.Name),
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return proxyproto.Listen(ln, opts), nil
}

// readProxyHeader reads the PROXY header of a connection on a listener
// that takes one, and takes the real client address from it. It returns
// an error when the connection must be refused.
func (c *conn) readProxyHeader() error {
	pc, ok := c.nc.(*proxyproto.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), c.deadline)
	defer cancel()
	if _, err := pc.Header(ctx); err != nil {
		c.s.log.Info("connection refused: PROXY protocol", "listener", c.bl.cfg.Name, "remote", c.remote, "err", err)
		return err
	}
	c.remote = pc.RemoteAddr().String()
	c.proxySSL = pc.SSL()
	if !c.bl.guard.Allow(pc.RemoteAddr()) {
		return fmt.Errorf("connection rate of %s over conn_rate_per_ip", c.remote)
	}
	return nil
}

// proxyIdentity turns what a trusted balancer says about the client's TLS
// session into a transport identity (method proxy-tls): from the forwarded
// certificate when there is one (same identity mapping, binding and
// revocation checks as a direct client certificate), else from the CN.
// A failed verification at the balancer refuses the client.
func (c *conn) proxyIdentity() (*auth.TransportIdentity, error) {
	ssl := c.proxySSL
	if ssl == nil || !ssl.TLS() || !ssl.HasClientCert() {
		return nil, nil
	}
	if !ssl.Verified() {
		return nil, fmt.Errorf("the load balancer reports a failed client certificate verification (code %d)", ssl.Verify)
	}
	px := c.bl.cfg.Proxy
	attrs := map[string]string{"tls_version": ssl.Version, "tls_cipher": ssl.Cipher, "proxy": "true"}
	cert, err := ssl.Certificate()
	switch {
	case err == nil:
		if c.s.ca != nil {
			if err := caRevoked(c.s.ca, []*x509.Certificate{cert}); err != nil {
				return nil, err
			}
		}
		id, err := tlspolicy.Identity(cert, px.Identity)
		if err != nil {
			return nil, err
		}
		fp := sha256.Sum256(cert.Raw)
		attrs["fingerprint"] = hex.EncodeToString(fp[:])
		attrs["serial"] = cert.SerialNumber.String()
		if cn, err := tlspolicy.Identity(cert, "cn"); err == nil {
			attrs["cn"] = cn
		}
		c.leaf = cert
		c.idFields = tlspolicy.CertIdentityFields(cert)
		return &auth.TransportIdentity{Method: auth.MethodProxyTLS, ID: id, Attrs: attrs}, nil
	case errors.Is(err, proxyproto.ErrNoClientCert) && ssl.CN != "":
		if px.Identity != "cn" {
			return nil, fmt.Errorf("the load balancer forwards only the CN, but identity = %q", px.Identity)
		}
		attrs["cn"] = ssl.CN
		cn := ssl.CN
		c.idFields = func(source string) (string, error) {
			if source == "cn" {
				return cn, nil
			}
			return "", fmt.Errorf("only the CN was forwarded, not %s", source)
		}
		return &auth.TransportIdentity{Method: auth.MethodProxyTLS, ID: cn, Attrs: attrs}, nil
	default:
		return nil, fmt.Errorf("client certificate from the load balancer: %w", err)
	}
}

// binding returns the client-id binding rule that applies to this
// connection's transport identity.
func (c *conn) binding() (bind bool, template string) {
	if c.proxySSL != nil && c.bl.cfg.Proxy != nil {
		px := c.bl.cfg.Proxy
		return px.BindClientID == nil || *px.BindClientID, px.ClientIDTemplate
	}
	if t := c.bl.cfg.TLS; t != nil {
		return t.BindsClientID(), t.ClientIDTemplate
	}
	return false, ""
}
