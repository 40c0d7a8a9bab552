package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/pki"
)

// defaultAddrs are where the embedded configuration listens.
type defaultAddrs struct {
	tls, plain, crl, admin string
}

// embeddedConfig is what `moat serve` runs without a configuration file: a
// secure first run. The first time, it creates in dataDir a master key, a
// CA, a server certificate for this machine and an empty PSK file; later
// runs reuse them (and renew the server certificate when due). It listens
// with TLS on all interfaces (client certificates optional, TLS-PSK;
// anonymous clients refused) and with plain MQTT on loopback only
// (anonymous allowed there, like mosquitto's local-only mode), and serves
// the CRL over HTTP.
func embeddedConfig(dataDir string, addrs defaultAddrs, stdout io.Writer) (*config.Config, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	mkPath := masterKeyPath(dataDir)
	mk, err := pki.LoadMasterKey(mkPath, "MOAT_MASTER_KEY")
	newKey := false
	if errors.Is(err, pki.ErrNoMasterKey) {
		mk, err = pki.GenerateMasterKeyFile(mkPath)
		newKey = true
	}
	if err != nil {
		return nil, err
	}
	_, crlPort, err := net.SplitHostPort(addrs.crl)
	if err != nil {
		return nil, fmt.Errorf("crl address %q: %w", addrs.crl, err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	ca, created, err := pki.OpenOrInit(filepath.Join(dataDir, "pki"), pki.InitOptions{
		Protector: mk,
		CRLURL:    "http://" + strings.ToLower(host) + ":" + crlPort + "/pki/crl",
	})
	if err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server.key")
	if _, err := ca.RenewServer(certFile, keyFile, pki.LocalServerRequest(), 0); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	// An admin API token for the CLI on this machine.
	adminDir := filepath.Join(dataDir, "admin")
	if err := os.MkdirAll(adminDir, 0o700); err != nil {
		return nil, err
	}
	tokensFile, cliToken := filepath.Join(adminDir, "tokens"), filepath.Join(adminDir, "cli.token")
	if _, err := os.Stat(tokensFile); errors.Is(err, os.ErrNotExist) {
		tok, rec := admin.GenerateToken("cli")
		if err := os.WriteFile(cliToken, []byte(tok+"\n"), 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(tokensFile, []byte(rec.Name+":"+rec.SHA256+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	pskFile := filepath.Join(dataDir, "psk.txt")
	if _, err := os.Stat(pskFile); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(pskFile, []byte("# TLS-PSK keys, one per line: identity:hexkey (at least 16 bytes)\n"), 0o600); err != nil {
			return nil, err
		}
	}

	cfg := config.Default()
	cfg.SetDataDir(dataDir)
	yes, no := true, false
	cfg.Listeners = []config.Listener{
		{Name: "tls", Type: config.ListenerTLS, Address: addrs.tls, AllowAnonymous: &no, TLS: &config.TLS{
			Cert:       certFile,
			Key:        keyFile,
			ClientAuth: "optional",
			ClientCA:   []string{ca.RootFile()},
			PSKFile:    pskFile,
		}},
		{Name: "local", Type: config.ListenerTCP, Address: addrs.plain, AllowAnonymous: &yes},
	}
	cfg.PKI.Enabled = &yes
	cfg.Devices.Enabled = &yes
	cfg.Admin.TokensFile = tokensFile
	cfg.Admin.Address = addrs.admin
	cfg.PKI.CRLAddress = addrs.crl
	cfg.MasterKeyFile = mkPath
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	if created || newKey {
		fmt.Fprintf(stdout, "First run: created in %s\n", dataDir)
		fmt.Fprintf(stdout, "  master key   %s  (unlocks the CA keys: keep it safe and private)\n", mkPath)
		fmt.Fprintf(stdout, "  CA           %s  (devices trust this)\n", ca.RootFile())
		fmt.Fprintf(stdout, "  server cert  %s  (%s)\n", certFile, strings.Join(serverNames(), ", "))
		fmt.Fprintf(stdout, "  PSK file     %s\n", pskFile)
		fmt.Fprintf(stdout, "  admin token  %s  (for the admin API and `moat device`)\n", cliToken)
	}
	tlsHost, tlsPort, _ := net.SplitHostPort(addrs.tls)
	plainHost, plainPort, _ := net.SplitHostPort(addrs.plain)
	connectHost := "localhost"
	if tlsHost != "" && tlsHost != "0.0.0.0" && tlsHost != "::" {
		connectHost = tlsHost
	}
	ca1 := ca.RootFile()
	adminFlag := ""
	if addrs.admin != "127.0.0.1:9883" {
		adminFlag = " --admin https://" + addrs.admin
	}
	fmt.Fprintf(stdout, `
moat listens on %s with TLS (client certificates, TLS-PSK; no anonymous
clients) and on %s:%s without TLS (this machine only; anonymous allowed).

Register two devices, each with its own certificate (a certificate's name is
its client id, so one device cannot pose as another), then connect them:

  moat device add dev-1 --cert --data-dir %s%s --out .
  moat device add console --cert --data-dir %s%s --out .
  mosquitto_sub -h %s -p %s --cafile %s --cert console.chain.pem --key console.key -t 'devices/#' -v -C 1
  mosquitto_pub -h %s -p %s --cafile %s --cert dev-1.chain.pem --key dev-1.key -t devices/dev-1/hello -m hello

`, addrs.tls, plainHost, plainPort, dataDir, adminFlag, dataDir, adminFlag, connectHost, tlsPort, ca1, connectHost, tlsPort, ca1)
	return cfg, nil
}

func serverNames() []string {
	req := pki.LocalServerRequest()
	out := append([]string(nil), req.DNS...)
	for _, ip := range req.IPs {
		out = append(out, ip.String())
	}
	return out
}
