package main

// The device registry commands: `moat device ...`, `moat keygen`, `moat
// keys rotate` and `moat admin token create`. Device commands talk to the
// running broker through its admin API and fall back to the data directory
// (registry.db) when no broker runs; the logic lives in internal/registry,
// internal/admin and internal/pki, this file only maps commands onto them.

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"moat/internal/admin"
	"moat/internal/config"
	"moat/internal/pki"
	"moat/internal/registry"
)

const deviceUsage = `Usage:
  moat device add ID [credentials] [--meta k=v]... [--disabled] [ACL rules]
      credentials (any combination):
        --psk [--psk-identity X] [--psk-key HEX]   per-device TLS-PSK (32 random bytes unless --psk-key)
        --fleet-psk [--psk-identity X]             PSK derived from the fleet key (see fleet-key)
        --cert [--out DIR]                         issue a client certificate from the built-in CA
        --cert-file PEM                            bind an existing certificate by fingerprint
        --pin HEXSHA256 | --pin-cert PEM           pinned public key, no CA (see moat keygen)
        --ecdh-pub HEX [--ecdh-identity X]         device X25519 public key; PSK derived by ECDH
        --password | --generate-password           password (read from stdin, one line) or a random one
  moat device list [--json]
  moat device show ID [--json]
  moat device disable ID | enable ID | remove ID
  moat device rotate ID CREDID                     new random secret for a psk or password credential
  moat device acl ID [--allow-pub F] [--deny-pub F] [--allow-sub F] [--deny-sub F]
                     [--allow F] [--deny F] [--clear]   replace the device's ACL (deny wins)
  moat device cred add ID [credentials]            add credentials to an existing device
  moat device cred remove ID CREDID
  moat device revoke ID [--reason R]               revoke every certificate the built-in CA issued
                                                   to CN=ID, and disable the device
  moat device psk derive ID [--identity X]         print a device's fleet-derived PSK (provisioning)
  moat device fleet-key [--replace]                create the fleet key (printed once)
  moat device ecdh-key                             print the broker's X25519 public key

Secrets (PSKs, passwords, keys) are printed once and never stored in clear.

Every command takes --data-dir DIR (default ./moat-data) or --config FILE.
It talks to the running broker's admin API (--admin URL, $MOAT_ADMIN_URL,
default https://127.0.0.1:9883, or the config's [admin] address), verified
with --admin-ca (default DIR/pki/root.pem) and authenticated by the token
in --token-file, $MOAT_ADMIN_TOKEN or DIR/admin/cli.token. When no broker
listens there (connection refused on a loopback address), or with
--offline, it opens DIR/registry.db directly.
`

const keygenUsage = `Usage:
  moat keygen [--out DIR] [--name N] [--validity 3650d]
      an ECDSA P-256 key pair and a self-signed certificate (clientAuth) for a
      pinned-key device; prints the pin for "moat device add ID --pin PIN"
  moat keygen --ecdh [--out DIR] [--name N] [--key FILE] [--broker-pub HEX --identity ID]
      an X25519 key pair (or --key: an existing one); prints the public key for
      "moat device add ID --ecdh-pub HEX" and, given the broker's public key
      ("moat device ecdh-key") and the PSK identity, the device's PSK
`

const keysUsage = `Usage:
  moat keys rotate [--new-key-file FILE] [--data-dir DIR | --config FILE]
      re-encrypt the device registry and the CA keys under a new master key
      (FILE, or a new random key), then replace master.key and keep the old
      key as master.key.old (mode 0600). Stop the broker first.
`

const adminUsage = `Usage:
  moat admin token create NAME [--data-dir DIR | --config FILE]
      make an admin API bearer token; its SHA-256 is appended to
      DIR/admin/tokens (or the config's admin.tokens_file) and the token is
      printed once. The broker reads the file when it starts.
`

// Environment variables of the device commands.
const (
	envAdminURL   = "MOAT_ADMIN_URL"
	envAdminToken = "MOAT_ADMIN_TOKEN"
	envMasterKey  = "MOAT_MASTER_KEY"
)

// errDevUsage marks an error in the command line (exit status 2).
var errDevUsage = errors.New("usage")

func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errDevUsage, fmt.Sprintf(format, a...))
}

// exitCode reports err the way every command here does.
func exitCode(prefix string, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errDevUsage):
		fmt.Fprintf(stderr, "%s: %s\n", prefix, strings.TrimPrefix(err.Error(), "usage: "))
		return 2
	case isFlagError(err):
		return 2 // the flag package has printed it
	}
	fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
	return 1
}

// flagError wraps errors of flag.FlagSet.Parse (already printed).
type flagError struct{ err error }

func (e flagError) Error() string { return e.err.Error() }
func (e flagError) Unwrap() error { return e.err }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

// parseArgs parses flags anywhere among the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, flagError{err}
	}
	return pos, nil
}

// ---------------------------------------------------------------------
// Shared flags and the data directory.

// devEnv holds the flags the device commands share and what they resolve
// to.
type devEnv struct {
	dataDirFlag string
	cfgPath     string
	adminURL    string
	adminCA     string
	tokenFile   string
	offline     bool

	// Resolved by resolve.
	dataDir       string
	masterKeyFile string
	tokensFile    string
	cfgAdminAddr  string
}

func (e *devEnv) dirFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.dataDirFlag, "data-dir", "", "data directory (default ./moat-data or the config's data_dir)")
	fs.StringVar(&e.cfgPath, "config", "", "configuration file to take data_dir (and the admin API settings) from")
}

func (e *devEnv) apiFlags(fs *flag.FlagSet) {
	e.dirFlags(fs)
	fs.StringVar(&e.adminURL, "admin", "", "admin API URL (default $"+envAdminURL+", the config's admin.address, or https://"+admin.DefaultAddr+")")
	fs.StringVar(&e.adminCA, "admin-ca", "", "CA file that verifies the admin API's certificate (default DIR/pki/root.pem)")
	fs.StringVar(&e.tokenFile, "token-file", "", "file holding the admin API token (default $"+envAdminToken+" or DIR/admin/cli.token)")
	fs.BoolVar(&e.offline, "offline", false, "do not try the admin API: open DIR/registry.db directly (the broker must not be running)")
}

// resolve works out the data directory and the files in it.
func (e *devEnv) resolve() error {
	if e.cfgPath != "" {
		cfg, err := config.Load(e.cfgPath)
		if err != nil {
			return err
		}
		e.dataDir, e.masterKeyFile, e.tokensFile = cfg.DataDir, cfg.MasterKeyFile, cfg.Admin.TokensFile
		e.cfgAdminAddr = cfg.Admin.Address
		if e.dataDirFlag != "" {
			// --data-dir overrides data_dir, and the defaults derived
			// from it, like `moat serve` does.
			if e.masterKeyFile == filepath.Join(cfg.DataDir, "master.key") {
				e.masterKeyFile = filepath.Join(e.dataDirFlag, "master.key")
			}
			if e.tokensFile == filepath.Join(cfg.DataDir, "admin", "tokens") {
				e.tokensFile = filepath.Join(e.dataDirFlag, "admin", "tokens")
			}
			e.dataDir = e.dataDirFlag
		}
	} else {
		e.dataDir = config.DefaultDataDir
		if e.dataDirFlag != "" {
			e.dataDir = e.dataDirFlag
		}
	}
	if e.masterKeyFile == "" {
		e.masterKeyFile = filepath.Join(e.dataDir, "master.key")
	}
	if e.tokensFile == "" {
		e.tokensFile = filepath.Join(e.dataDir, "admin", "tokens")
	}
	return nil
}

func (e *devEnv) registryPath() string { return filepath.Join(e.dataDir, "registry.db") }
func (e *devEnv) pkiDir() string       { return filepath.Join(e.dataDir, "pki") }

// registryKey loads the registry's master key like the broker does: the
// master key file when it exists, else $MOAT_MASTER_KEY.
func (e *devEnv) registryKey() (*registry.MasterKey, error) {
	if _, err := os.Stat(e.masterKeyFile); err == nil {
		return registry.LoadMasterKeyFile(e.masterKeyFile)
	}
	if os.Getenv(envMasterKey) != "" {
		return registry.MasterKeyFromEnv(envMasterKey)
	}
	return nil, fmt.Errorf("no master key: %s does not exist and $%s is not set (the broker's first run or `moat pki init` creates it)", e.masterKeyFile, envMasterKey)
}

// openCA opens the built-in CA of the data directory.
func (e *devEnv) openCA() (*pki.CA, error) {
	mk, err := pki.LoadMasterKey(e.masterKeyFile, envMasterKey)
	if err != nil {
		return nil, err
	}
	return pki.Open(e.pkiDir(), mk)
}

// openLocal opens the data directory's registry.
func (e *devEnv) openLocal() (*localStore, error) {
	if fi, err := os.Stat(e.dataDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("data directory %s does not exist (use --data-dir or --config)", e.dataDir)
	}
	mk, err := e.registryKey()
	if err != nil {
		return nil, err
	}
	reg, err := registry.Open(e.registryPath(), mk, nil)
	if err != nil {
		return nil, err
	}
	return &localStore{reg: reg, path: e.registryPath()}, nil
}

// adminBase returns the admin API's base URL (scheme and host).
func (e *devEnv) adminBase() (*url.URL, error) {
	raw := e.adminURL
	if raw == "" {
		raw = os.Getenv(envAdminURL)
	}
	if raw == "" && e.cfgAdminAddr != "" {
		host, port, err := net.SplitHostPort(e.cfgAdminAddr)
		if err == nil {
			// A wildcard listen address is reached on loopback.
			switch host {
			case "", "0.0.0.0":
				host = "127.0.0.1"
			case "::":
				host = "::1"
			}
			raw = "https://" + net.JoinHostPort(host, port)
		}
	}
	if raw == "" {
		raw = "https://" + admin.DefaultAddr
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, usageErrorf("admin URL %q: %v", raw, err)
	}
	if u.Scheme != "https" {
		return nil, usageErrorf("admin URL %q: the admin API is HTTPS only (the token must not travel in clear)", raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "443")
	}
	u.Path, u.RawQuery, u.Fragment = strings.TrimSuffix(u.Path, "/"), "", ""
	return u, nil
}

// token finds the admin API token; "" when there is none.
func (e *devEnv) token() (string, string, error) {
	if e.tokenFile != "" {
		t, err := readSecretFile(e.tokenFile)
		return t, e.tokenFile, err
	}
	if t := strings.TrimSpace(os.Getenv(envAdminToken)); t != "" {
		return t, "$" + envAdminToken, nil
	}
	p := filepath.Join(e.dataDir, "admin", "cli.token")
	if _, err := os.Stat(p); err == nil {
		t, err := readSecretFile(p)
		return t, p, err
	}
	return "", "", nil
}

// readSecretFile reads a token file, refusing one that group or others
// may read.
func readSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: mode %04o gives access to group or others (chmod 600 it)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return t, nil
}

// openStore returns the admin API when a broker answers on its address,
// else the data directory's registry.
// open resolves the shared flags and opens the registry: through the
// admin API, or on the data directory.
func (e *devEnv) open(stderr io.Writer) (deviceStore, error) {
	if err := e.resolve(); err != nil {
		return nil, err
	}
	return e.openStore(stderr)
}

func (e *devEnv) openStore(stderr io.Writer) (deviceStore, error) {
	if e.offline {
		return e.openLocalExplained("")
	}
	base, err := e.adminBase()
	if err != nil {
		return nil, err
	}
	conn, dialErr := net.DialTimeout("tcp", base.Host, 3*time.Second)
	if dialErr == nil {
		conn.Close()
		return e.openAPI(base)
	}
	if !isLoopbackHost(base.Hostname()) {
		return nil, fmt.Errorf("admin API %s unreachable: %v (the data directory is only used in its stead for a loopback admin address; use --offline to open it anyway)", base, dialErr)
	}
	why := fmt.Sprintf("its admin API at %s could not be reached (%v)", base, dialErr)
	st, err := e.openLocalExplained(why)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "moat: no admin API at %s; working on %s directly\n", base, st.path)
	return st, nil
}

// openLocalExplained is openLocal with a clear message when a running
// broker holds the registry.
func (e *devEnv) openLocalExplained(why string) (*localStore, error) {
	st, err := e.openLocal()
	if errors.Is(err, registry.ErrInUse) {
		if why == "" {
			why = "--offline was given"
		}
		return nil, fmt.Errorf("the broker is running on %s (%s is locked), but %s; check that the broker's admin API is on ([admin] in the configuration, an admin token) and --admin / $%s, or stop the broker to work offline",
			e.dataDir, e.registryPath(), why, envAdminURL)
	}
	return st, err
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (e *devEnv) openAPI(base *url.URL) (*apiStore, error) {
	tok, from, err := e.token()
	if err != nil {
		return nil, fmt.Errorf("admin API token: %w", err)
	}
	if tok == "" {
		return nil, fmt.Errorf("the admin API at %s is up but no token was found: use --token-file, $%s or %s (`moat admin token create NAME` makes one)",
			base, envAdminToken, filepath.Join(e.dataDir, "admin", "cli.token"))
	}
	caFile := e.adminCA
	if caFile == "" {
		caFile = filepath.Join(e.pkiDir(), "root.pem")
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("admin API CA (--admin-ca): %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("admin API CA %s: no PEM certificate in it", caFile)
	}
	tr := &http.Transport{
		Proxy:               nil, // never hand the token to a proxy
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &apiStore{
		base:      base.String(),
		token:     tok,
		tokenFrom: from,
		// Generous: a password credential costs an argon2id hash.
		hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute},
	}, nil
}

// ---------------------------------------------------------------------
// The two transports.

// deviceStore is what the device commands need: the admin API of a running
// broker (apiStore) or the registry file itself (localStore).
type deviceStore interface {
	add(nd registry.NewDevice) (*registry.Device, []secretOut, error)
	addCredential(id string, nc registry.NewCredential) (*registry.Credential, *secretOut, error)
	removeCredential(id, credID string) error
	list() ([]*registry.Device, error)
	get(id string) (*registry.Device, error)
	setStatus(id string, s registry.Status) (*registry.Device, error)
	remove(id string) error
	rotate(id, credID string) (secretOut, error)
	setACL(id string, rules []registry.Rule) (*registry.Device, error)
	derivePSK(identity string) ([]byte, error)
	setFleetKey(replace bool) ([]byte, error)
	ecdhPublicKey() ([]byte, error)
	where() string
	close() error
}

// secretOut is a secret to show once.
type secretOut struct {
	CredentialID string
	Kind         registry.Kind
	Identity     string
	Key          []byte // psk
	Password     string // password
}

func secretFromIssued(is registry.Issued) secretOut {
	s := secretOut{CredentialID: is.CredentialID, Kind: is.Kind, Identity: is.Identity}
	if is.Kind == registry.KindPassword {
		s.Password = string(is.Secret)
	} else {
		s.Key = is.Secret
	}
	return s
}

// localStore works on registry.db directly.
type localStore struct {
	reg  *registry.Registry
	path string
}

func (l *localStore) where() string { return l.path }
func (l *localStore) close() error  { return l.reg.Close() }

func (l *localStore) add(nd registry.NewDevice) (*registry.Device, []secretOut, error) {
	d, issued, err := l.reg.Add(nd)
	if err != nil {
		return nil, nil, err
	}
	var out []secretOut
	for _, is := range issued {
		out = append(out, secretFromIssued(is))
	}
	return d, out, nil
}

func (l *localStore) addCredential(id string, nc registry.NewCredential) (*registry.Credential, *secretOut, error) {
	c, is, err := l.reg.AddCredential(id, nc)
	if err != nil || is == nil {
		return c, nil, err
	}
	s := secretFromIssued(*is)
	return c, &s, nil
}

func (l *localStore) removeCredential(id, credID string) error {
	return l.reg.RemoveCredential(id, credID)
}

func (l *localStore) list() ([]*registry.Device, error) { return l.reg.List(), nil }

func (l *localStore) get(id string) (*registry.Device, error) {
	d, ok := l.reg.Device(id)
	if !ok {
		return nil, fmt.Errorf("device %q: %w", id, registry.ErrNotFound)
	}
	return d, nil
}

func (l *localStore) setStatus(id string, s registry.Status) (*registry.Device, error) {
	return l.reg.SetStatus(id, s)
}

func (l *localStore) remove(id string) error { return l.reg.Remove(id) }

func (l *localStore) rotate(id, credID string) (secretOut, error) {
	d, err := l.get(id)
	if err != nil {
		return secretOut{}, err
	}
	i := slices.IndexFunc(d.Credentials, func(c registry.Credential) bool { return c.ID == credID })
	if i < 0 {
		return secretOut{}, fmt.Errorf("device %q has no credential %q: %w", id, credID, registry.ErrNotFound)
	}
	c := d.Credentials[i]
	secret, err := l.reg.RotateCredential(id, credID)
	if err != nil {
		return secretOut{}, err
	}
	return secretFromIssued(registry.Issued{CredentialID: credID, Kind: c.Kind, Identity: c.Identity, Secret: secret}), nil
}

func (l *localStore) setACL(id string, rules []registry.Rule) (*registry.Device, error) {
	return l.reg.Update(id, registry.DeviceUpdate{ACL: &rules})
}

func (l *localStore) derivePSK(identity string) ([]byte, error) { return l.reg.DerivePSK(identity) }

func (l *localStore) setFleetKey(replace bool) ([]byte, error) {
	if l.reg.HasFleetKey() && !replace {
		return nil, errors.New("a fleet key is already set; replacing it changes every derived PSK (use --replace)")
	}
	key := registry.NewRandomKey()
	if err := l.reg.SetFleetKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

func (l *localStore) ecdhPublicKey() ([]byte, error) { return l.reg.BrokerECDHPublicKey() }

// apiStore talks to the broker's admin API.
type apiStore struct {
	base      string
	token     string
	tokenFrom string // where the token came from, for error messages
	hc        *http.Client
}

func (a *apiStore) where() string { return "admin API " + a.base }
func (a *apiStore) close() error  { a.hc.CloseIdleConnections(); return nil }

// apiStatusError is an error answer of the admin API.
type apiStatusError struct {
	status int
	msg    string
}

func (e *apiStatusError) Error() string {
	if e.status == http.StatusUnauthorized {
		return fmt.Sprintf("admin API refused the token (HTTP 401): %s", e.msg)
	}
	return fmt.Sprintf("%s (admin API: HTTP %d)", e.msg, e.status)
}

func (e *apiStatusError) Unwrap() error {
	if e.status == http.StatusNotFound {
		return registry.ErrNotFound
	}
	return nil
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (a *apiStore) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API: reading the answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = http.StatusText(resp.StatusCode)
		}
		if resp.StatusCode == http.StatusUnauthorized {
			eb.Error += " (token from " + a.tokenFrom + ")"
		}
		return &apiStatusError{status: resp.StatusCode, msg: eb.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin API: undecodable answer to %s %s: %v", method, path, err)
		}
	}
	return nil
}

// apiCredential is a credential in an admin API request body.
type apiCredential struct {
	Kind         string `json:"kind"`
	Fingerprint  string `json:"fingerprint,omitempty"`
	Issuer       string `json:"issuer,omitempty"`
	Serial       string `json:"serial,omitempty"`
	Subject      string `json:"subject,omitempty"`
	Certificate  string `json:"certificate,omitempty"` // PEM
	Identity     string `json:"identity,omitempty"`
	Key          string `json:"key,omitempty"` // hex
	Derived      bool   `json:"derived,omitempty"`
	SPKISHA256   string `json:"spki_sha256,omitempty"`
	PublicKey    string `json:"public_key,omitempty"`
	Password     string `json:"password,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
}

func toAPICredential(nc registry.NewCredential) apiCredential {
	c := apiCredential{Kind: string(nc.Kind), Fingerprint: nc.Fingerprint, Issuer: nc.Issuer, Serial: nc.Serial,
		Subject: nc.Subject, Identity: nc.Identity, Derived: nc.Derived, SPKISHA256: nc.SPKISHA256,
		PublicKey: nc.PublicKey, Password: string(nc.Password), PasswordHash: nc.PasswordHash}
	if nc.Certificate != nil {
		c.Certificate = string(pki.CertsPEM(nc.Certificate))
	}
	if nc.Key != nil {
		c.Key = hex.EncodeToString(nc.Key)
	}
	return c
}

// apiSecret is a secret in an admin API answer.
type apiSecret struct {
	CredentialID string `json:"credential_id"`
	Kind         string `json:"kind"`
	Identity     string `json:"identity,omitempty"`
	Key          string `json:"key,omitempty"`
	Password     string `json:"password,omitempty"`
}

func (s apiSecret) out() (secretOut, error) {
	o := secretOut{CredentialID: s.CredentialID, Kind: registry.Kind(s.Kind), Identity: s.Identity, Password: s.Password}
	if s.Key != "" {
		k, err := hex.DecodeString(s.Key)
		if err != nil {
			return o, errors.New("admin API: a key in the answer is not hex")
		}
		o.Key = k
	}
	return o, nil
}

func devicePath(id string, rest ...string) string {
	p := "/v1/devices/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func (a *apiStore) add(nd registry.NewDevice) (*registry.Device, []secretOut, error) {
	req := struct {
		ID          string            `json:"id"`
		Status      string            `json:"status,omitempty"`
		Metadata    map[string]string `json:"metadata,omitempty"`
		ACL         []registry.Rule   `json:"acl,omitempty"`
		Credentials []apiCredential   `json:"credentials,omitempty"`
	}{ID: nd.ID, Metadata: nd.Metadata, ACL: nd.ACL}
	if nd.Disabled {
		req.Status = string(registry.StatusDisabled)
	}
	for _, nc := range nd.Credentials {
		req.Credentials = append(req.Credentials, toAPICredential(nc))
	}
	var resp struct {
		Device  *registry.Device `json:"device"`
		Secrets []apiSecret      `json:"secrets"`
	}
	if err := a.do(http.MethodPost, "/v1/devices", req, &resp); err != nil {
		return nil, nil, err
	}
	var out []secretOut
	for _, s := range resp.Secrets {
		o, err := s.out()
		if err != nil {
			return nil, nil, err
		}
		out = append(out, o)
	}
	return resp.Device, out, nil
}

func (a *apiStore) addCredential(id string, nc registry.NewCredential) (*registry.Credential, *secretOut, error) {
	var resp struct {
		Credential *registry.Credential `json:"credential"`
		Secret     *apiSecret           `json:"secret"`
	}
	if err := a.do(http.MethodPost, devicePath(id, "credentials"), toAPICredential(nc), &resp); err != nil {
		return nil, nil, err
	}
	if resp.Secret == nil {
		return resp.Credential, nil, nil
	}
	o, err := resp.Secret.out()
	if err != nil {
		return nil, nil, err
	}
	return resp.Credential, &o, nil
}

func (a *apiStore) removeCredential(id, credID string) error {
	return a.do(http.MethodDelete, devicePath(id, "credentials", credID), nil, nil)
}

func (a *apiStore) list() ([]*registry.Device, error) {
	var resp struct {
		Devices []*registry.Device `json:"devices"`
	}
	if err := a.do(http.MethodGet, "/v1/devices", nil, &resp); err != nil {
		return nil, err
	}
	return resp.Devices, nil
}

func (a *apiStore) get(id string) (*registry.Device, error) {
	var d registry.Device
	if err := a.do(http.MethodGet, devicePath(id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (a *apiStore) setStatus(id string, s registry.Status) (*registry.Device, error) {
	action := "enable"
	if s == registry.StatusDisabled {
		action = "disable"
	}
	var d registry.Device
	if err := a.do(http.MethodPost, devicePath(id, action), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (a *apiStore) remove(id string) error {
	return a.do(http.MethodDelete, devicePath(id), nil, nil)
}

func (a *apiStore) rotate(id, credID string) (secretOut, error) {
	var s apiSecret
	if err := a.do(http.MethodPost, devicePath(id, "credentials", credID, "rotate"), nil, &s); err != nil {
		return secretOut{}, err
	}
	return s.out()
}

func (a *apiStore) setACL(id string, rules []registry.Rule) (*registry.Device, error) {
	if rules == nil {
		rules = []registry.Rule{} // an empty list, not "leave alone"
	}
	var d registry.Device
	if err := a.do(http.MethodPatch, devicePath(id), map[string]any{"acl": rules}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func (a *apiStore) derivePSK(identity string) ([]byte, error) {
	var resp struct {
		Key string `json:"key"`
	}
	if err := a.do(http.MethodPost, "/v1/fleet/derive", map[string]string{"identity": identity}, &resp); err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(resp.Key)
	if err != nil || len(k) == 0 {
		return nil, errors.New("admin API: no key in the answer")
	}
	return k, nil
}

func (a *apiStore) setFleetKey(replace bool) ([]byte, error) {
	var resp struct {
		Key string `json:"key"`
	}
	if err := a.do(http.MethodPost, "/v1/fleet/key", map[string]bool{"replace": replace}, &resp); err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(resp.Key)
	if err != nil || len(k) == 0 {
		return nil, errors.New("admin API: no key in the answer")
	}
	return k, nil
}

func (a *apiStore) ecdhPublicKey() ([]byte, error) {
	var resp struct {
		PublicKey string `json:"public_key"`
	}
	if err := a.do(http.MethodGet, "/v1/ecdh/public-key", nil, &resp); err != nil {
		return nil, err
	}
	k, err := hex.DecodeString(resp.PublicKey)
	if err != nil || len(k) != 32 {
		return nil, errors.New("admin API: no X25519 public key in the answer")
	}
	return k, nil
}

// ---------------------------------------------------------------------
// moat device

func deviceCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, deviceUsage)
		return 2
	}
	var err error
	rest := args[1:]
	switch args[0] {
	case "add":
		err = deviceAdd(rest, stdin, stdout, stderr)
	case "list", "ls":
		err = deviceList(rest, stdout, stderr)
	case "show":
		err = deviceShow(rest, stdout, stderr)
	case "disable":
		err = deviceSetStatus(rest, registry.StatusDisabled, stdout, stderr)
	case "enable":
		err = deviceSetStatus(rest, registry.StatusEnabled, stdout, stderr)
	case "remove", "rm":
		err = deviceRemove(rest, stdout, stderr)
	case "rotate":
		err = deviceRotate(rest, stdout, stderr)
	case "acl":
		err = deviceACL(rest, stdout, stderr)
	case "cred", "credential":
		err = deviceCred(rest, stdin, stdout, stderr)
	case "revoke":
		err = deviceRevoke(rest, stdout, stderr)
	case "psk":
		if len(rest) == 0 || rest[0] != "derive" {
			err = usageErrorf("psk what? use \"moat device psk derive ID\"")
		} else {
			err = devicePSKDerive(rest[1:], stdout, stderr)
		}
	case "fleet-key":
		err = deviceFleetKey(rest, stdout, stderr)
	case "ecdh-key":
		err = deviceECDHKey(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, deviceUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "moat device: unknown command %q\n\n%s", args[0], deviceUsage)
		return 2
	}
	return exitCode("moat device", err, stderr)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseWant parses flags and exactly n positional arguments (what names
// them in the usage error).
func parseWant(fs *flag.FlagSet, args []string, n int, what string) ([]string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != n {
		return nil, usageErrorf("want %s, got %d argument(s)", what, len(pos))
	}
	return pos, nil
}

// credFlags are the flags that describe credentials (device add, cred add).
type credFlags struct {
	psk, fleetPSK       bool
	pskIdentity, pskKey string
	cert                bool
	out                 string
	certFile            string
	pin, pinCert        string
	ecdhPub, ecdhIdent  string
	password, genPW     bool
}

func (c *credFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.psk, "psk", false, "a TLS-PSK credential with a random 32-byte key (or --psk-key)")
	fs.StringVar(&c.pskIdentity, "psk-identity", "", "PSK identity (default the device id)")
	fs.StringVar(&c.pskKey, "psk-key", "", "PSK key in hex (16 to 64 bytes) instead of a random one")
	fs.BoolVar(&c.fleetPSK, "fleet-psk", false, "a TLS-PSK credential whose key is derived from the fleet key")
	fs.BoolVar(&c.cert, "cert", false, "issue a client certificate (CN = device id) from the built-in CA")
	fs.StringVar(&c.out, "out", ".", "--cert: directory for ID.pem, ID.chain.pem and ID.key")
	fs.StringVar(&c.certFile, "cert-file", "", "bind this PEM certificate by its SHA-256 fingerprint")
	fs.StringVar(&c.pin, "pin", "", "pinned key: hex SHA-256 of the device's SubjectPublicKeyInfo (moat keygen prints it)")
	fs.StringVar(&c.pinCert, "pin-cert", "", "pinned key: take the public key of this PEM certificate")
	fs.StringVar(&c.ecdhPub, "ecdh-pub", "", "ECDH credential: the device's X25519 public key, hex")
	fs.StringVar(&c.ecdhIdent, "ecdh-identity", "", "ECDH credential: PSK identity (default the device id)")
	fs.BoolVar(&c.password, "password", false, "a password credential; the password is read from stdin (one line)")
	fs.BoolVar(&c.genPW, "generate-password", false, "a password credential with a random password")
}

// build turns the flags into credentials (all but --cert, which needs the
// CA).
func (c *credFlags) build(stdin io.Reader, stderr io.Writer) ([]registry.NewCredential, error) {
	var out []registry.NewCredential
	if c.psk && c.fleetPSK {
		return nil, usageErrorf("--psk and --fleet-psk both make a PSK for the same identity: choose one")
	}
	if c.pskKey != "" {
		c.psk = true
	}
	if c.pskIdentity != "" && !c.psk && !c.fleetPSK {
		return nil, usageErrorf("--psk-identity goes with --psk or --fleet-psk")
	}
	if c.psk {
		nc := registry.NewCredential{Kind: registry.KindPSK, Identity: c.pskIdentity}
		if c.pskKey != "" {
			k, err := hex.DecodeString(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(c.pskKey)))
			if err != nil {
				return nil, usageErrorf("--psk-key: must be hex") // never echo the key
			}
			nc.Key = k
		}
		out = append(out, nc)
	}
	if c.fleetPSK {
		out = append(out, registry.NewCredential{Kind: registry.KindPSK, Identity: c.pskIdentity, Derived: true})
	}
	if c.certFile != "" {
		cert, err := readCertPEM(c.certFile)
		if err != nil {
			return nil, err
		}
		out = append(out, registry.NewCredential{Kind: registry.KindX509, Certificate: cert})
	}
	switch {
	case c.pin != "" && c.pinCert != "":
		return nil, usageErrorf("give --pin or --pin-cert, not both")
	case c.pin != "":
		out = append(out, registry.NewCredential{Kind: registry.KindPinnedKey, SPKISHA256: c.pin})
	case c.pinCert != "":
		cert, err := readCertPEM(c.pinCert)
		if err != nil {
			return nil, err
		}
		out = append(out, registry.NewCredential{Kind: registry.KindPinnedKey, Certificate: cert})
	}
	if c.ecdhIdent != "" && c.ecdhPub == "" {
		return nil, usageErrorf("--ecdh-identity goes with --ecdh-pub")
	}
	if c.ecdhPub != "" {
		out = append(out, registry.NewCredential{Kind: registry.KindECDH, PublicKey: c.ecdhPub, Identity: c.ecdhIdent})
	}
	switch {
	case c.password && c.genPW:
		return nil, usageErrorf("give --password or --generate-password, not both")
	case c.password:
		pw, err := readPasswordLine(stdin, stderr)
		if err != nil {
			return nil, err
		}
		out = append(out, registry.NewCredential{Kind: registry.KindPassword, Password: pw})
	case c.genPW:
		out = append(out, registry.NewCredential{Kind: registry.KindPassword})
	}
	if len(out) == 0 && !c.cert {
		return nil, usageErrorf("give at least one credential: --psk, --fleet-psk, --cert, --cert-file, --pin, --pin-cert, --ecdh-pub, --password or --generate-password")
	}
	return out, nil
}

// readPasswordLine reads one line from stdin (the prompt goes to stderr).
func readPasswordLine(stdin io.Reader, stderr io.Writer) ([]byte, error) {
	if stdin == nil {
		return nil, errors.New("--password: no standard input")
	}
	fmt.Fprint(stderr, "password: ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	fmt.Fprintln(stderr)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("--password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return nil, errors.New("--password: empty password refused")
	}
	return []byte(pw), nil
}

func readCertPEM(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			return c, nil
		}
	}
}

// metaFlag is a repeatable k=v flag.
type metaFlag map[string]string

func (m metaFlag) String() string { return "" }
func (m metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want key=value")
	}
	m[k] = val
	return nil
}

// aclFlag appends a rule per use; several aclFlags share one list so the
// rules keep the command line's order.
type aclFlag struct {
	rules        *[]registry.Rule
	perm, action string
}

func (f aclFlag) String() string { return "" }
func (f aclFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty topic filter")
	}
	*f.rules = append(*f.rules, registry.Rule{Permission: f.perm, Action: f.action, Topic: v})
	return nil
}

func registerACLFlags(fs *flag.FlagSet, rules *[]registry.Rule) {
	for _, f := range []struct{ name, perm, action, help string }{
		{"allow-pub", registry.PermissionAllow, registry.ActionPublish, "allow publishing to topic filter F (repeatable; %i = device id, %c = client id)"},
		{"deny-pub", registry.PermissionDeny, registry.ActionPublish, "deny publishing to F (repeatable)"},
		{"allow-sub", registry.PermissionAllow, registry.ActionSubscribe, "allow subscribing to F (repeatable)"},
		{"deny-sub", registry.PermissionDeny, registry.ActionSubscribe, "deny subscribing to F (repeatable)"},
		{"allow", registry.PermissionAllow, registry.ActionAll, "allow publishing and subscribing on F (repeatable)"},
		{"deny", registry.PermissionDeny, registry.ActionAll, "deny publishing and subscribing on F (repeatable)"},
	} {
		fs.Var(aclFlag{rules: rules, perm: f.perm, action: f.action}, f.name, f.help)
	}
}

// issuedCert is a client certificate issued for a device by --cert.
type issuedCert struct {
	ca    *pki.CA
	iss   *pki.Issued
	files pki.PEMFiles
}

// issueDeviceCert issues and writes a client certificate for id.
func (e *devEnv) issueDeviceCert(id, out string) (*issuedCert, error) {
	ca, err := e.openCA()
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	iss, err := ca.IssueClient(pki.ClientRequest{CommonName: id})
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	files, err := pki.WritePEM(out, id, iss)
	if err != nil {
		// Not handed out: withdraw it.
		_ = ca.Revoke(iss.Cert.SerialNumber, pki.ReasonCessationOfOperation)
		return nil, fmt.Errorf("--cert: %w", err)
	}
	return &issuedCert{ca: ca, iss: iss, files: files}, nil
}

// undo revokes a certificate that could not be registered and removes its
// files.
func (ic *issuedCert) undo() {
	_ = ic.ca.Revoke(ic.iss.Cert.SerialNumber, pki.ReasonCessationOfOperation)
	for _, f := range []string{ic.files.KeyFile, ic.files.CertFile, ic.files.ChainFile} {
		os.Remove(f)
	}
}

func deviceAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var env devEnv
	var cf credFlags
	fs := newFlagSet("device add", stderr)
	env.apiFlags(fs)
	cf.register(fs)
	meta := metaFlag{}
	fs.Var(meta, "meta", "metadata key=value (repeatable)")
	disabled := fs.Bool("disabled", false, "create the device disabled")
	var rules []registry.Rule
	registerACLFlags(fs, &rules)
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	id := pos[0]
	if !registry.ValidDeviceID(id) {
		return usageErrorf("device id %q: want 1 to 128 characters of A-Z a-z 0-9 - _ . : @, starting with a letter or digit", id)
	}
	if err := env.resolve(); err != nil {
		return err
	}
	creds, err := cf.build(stdin, stderr)
	if err != nil {
		return err
	}
	st, err := env.openStore(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	var ic *issuedCert
	if cf.cert {
		// Do not issue a certificate for a device that cannot be added.
		if _, err := st.get(id); err == nil {
			return fmt.Errorf("device %q: %w", id, registry.ErrExists)
		} else if !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		if ic, err = env.issueDeviceCert(id, cf.out); err != nil {
			return err
		}
		creds = append(creds, registry.NewCredential{Kind: registry.KindX509, Certificate: ic.iss.Cert})
	}
	nd := registry.NewDevice{ID: id, Disabled: *disabled, ACL: rules, Credentials: creds}
	if len(meta) > 0 {
		nd.Metadata = meta
	}
	d, secrets, err := st.add(nd)
	if err != nil {
		if ic != nil {
			ic.undo()
		}
		return withHint(err)
	}
	fmt.Fprintf(stdout, "device %s added (%s) via %s\n", d.ID, d.Status, st.where())
	printCredentials(stdout, d)
	printSecrets(stdout, &env, d.ID, secrets)
	printCredentialNotes(stdout, &env, st, d, creds, ic)
	return nil
}

// withHint adds what to do next to some registry errors.
func withHint(err error) error {
	if errors.Is(err, registry.ErrNoFleetKey) || strings.Contains(err.Error(), "no fleet key") {
		return fmt.Errorf("%w (create one with `moat device fleet-key`)", err)
	}
	return err
}

// printCredentialNotes prints what the device needs for credentials
// without a secret: certificate files, the broker's ECDH key.
func printCredentialNotes(w io.Writer, env *devEnv, st deviceStore, d *registry.Device, creds []registry.NewCredential, ic *issuedCert) {
	if ic != nil {
		fp := registry.CertFingerprint(ic.iss.Cert)
		fmt.Fprintf(w, "\nClient certificate (serial %s, valid until %s, fingerprint %s):\n",
			pki.FormatSerial(ic.iss.Cert.SerialNumber), ic.iss.Cert.NotAfter.UTC().Format(time.RFC3339), hex.EncodeToString(fp[:]))
		fmt.Fprintf(w, "  certificate  %s\n  chain        %s\n  key          %s (mode 0600: move it to the device)\n  CA           %s\n",
			ic.files.CertFile, ic.files.ChainFile, ic.files.KeyFile, ic.ca.RootFile())
		fmt.Fprintf(w, "  mosquitto_pub -h HOST -p 8883 --cafile %s --cert %s --key %s -t test -m hello\n",
			ic.ca.RootFile(), ic.files.ChainFile, ic.files.KeyFile)
	}
	for _, nc := range creds {
		if nc.Kind != registry.KindECDH {
			continue
		}
		pub, err := st.ecdhPublicKey()
		if err != nil {
			fmt.Fprintf(w, "\n(could not read the broker's ECDH public key: %v)\n", err)
			break
		}
		ident := nc.Identity
		if ident == "" {
			ident = d.ID
		}
		fmt.Fprintf(w, "\nECDH: the broker's X25519 public key is\n  %s\n", hex.EncodeToString(pub))
		fmt.Fprintf(w, "On the device, derive the PSK (it never crosses the network):\n  moat keygen --ecdh --key DEVICE.x25519.key --broker-pub %s --identity %s\n",
			hex.EncodeToString(pub), ident)
	}
}

// printSecrets shows generated secrets, once.
func printSecrets(w io.Writer, env *devEnv, deviceID string, secrets []secretOut) {
	if len(secrets) == 0 {
		return
	}
	fmt.Fprintln(w, "\nSecrets, shown once (moat keeps only sealed keys and password hashes): store them now.")
	for _, s := range secrets {
		switch s.Kind {
		case registry.KindPSK:
			k := hex.EncodeToString(s.Key)
			fmt.Fprintf(w, "  psk (credential %s)\n    identity  %s\n    key       %s\n", s.CredentialID, s.Identity, k)
			fmt.Fprintf(w, "    mosquitto_pub -h HOST -p 8883 --psk %s --psk-identity %s -t test -m hello\n", k, s.Identity)
		case registry.KindPassword:
			fmt.Fprintf(w, "  password (credential %s)\n    username  %s\n    password  %s\n", s.CredentialID, deviceID, s.Password)
			fmt.Fprintf(w, "    mosquitto_pub -h HOST -p 8883 --cafile %s -u %s -P '%s' -t test -m hello\n",
				filepath.Join(env.pkiDir(), "root.pem"), deviceID, s.Password)
		default:
			fmt.Fprintf(w, "  %s (credential %s): %x\n", s.Kind, s.CredentialID, s.Key)
		}
	}
}

func printCredentials(w io.Writer, d *registry.Device) {
	if len(d.Credentials) == 0 {
		fmt.Fprintln(w, "  (no credentials)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  CREDENTIAL\tKIND\tDETAIL\tCREATED")
	for _, c := range d.Credentials {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.ID, c.Kind, credDetail(d.ID, c), fmtTime(c.Created))
	}
	tw.Flush()
}

func credDetail(deviceID string, c registry.Credential) string {
	switch c.Kind {
	case registry.KindX509:
		switch {
		case c.Fingerprint != "":
			return "fingerprint " + c.Fingerprint
		case c.Issuer != "":
			return fmt.Sprintf("issuer %q serial %s", c.Issuer, c.Serial)
		}
		return "subject " + c.Subject
	case registry.KindPSK:
		if c.Derived {
			return "identity " + c.Identity + " (fleet-derived)"
		}
		return "identity " + c.Identity
	case registry.KindPinnedKey:
		return "spki-sha256 " + c.SPKISHA256
	case registry.KindECDH:
		return "identity " + c.Identity + " public-key " + c.PublicKey
	case registry.KindPassword:
		return "username " + deviceID
	}
	return ""
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func writeJSONOut(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func deviceList(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device list", stderr)
	env.apiFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	_, err := parseWant(fs, args, 0, "no arguments")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	devs, err := st.list()
	if err != nil {
		return err
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
	if *asJSON {
		if devs == nil {
			devs = []*registry.Device{}
		}
		return writeJSONOut(stdout, map[string]any{"devices": devs})
	}
	if len(devs) == 0 {
		fmt.Fprintln(stdout, "no devices")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tCREDENTIALS\tACL RULES\tUPDATED")
	for _, d := range devs {
		kinds := make([]string, 0, len(d.Credentials))
		for _, c := range d.Credentials {
			kinds = append(kinds, string(c.Kind))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.ID, d.Status, orDash(strings.Join(kinds, ",")), len(d.ACL), fmtTime(d.Updated))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func deviceShow(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device show", stderr)
	env.apiFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	d, err := st.get(pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONOut(stdout, d)
	}
	printDevice(stdout, d)
	return nil
}

func printDevice(w io.Writer, d *registry.Device) {
	fmt.Fprintf(w, "device   %s\nstatus   %s\ncreated  %s\nupdated  %s\n", d.ID, d.Status, fmtTime(d.Created), fmtTime(d.Updated))
	if len(d.Metadata) > 0 {
		fmt.Fprintln(w, "metadata")
		keys := make([]string, 0, len(d.Metadata))
		for k := range d.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s = %s\n", k, d.Metadata[k])
		}
	}
	printACL(w, d.ACL)
	fmt.Fprintln(w, "credentials")
	printCredentials(w, d)
}

func printACL(w io.Writer, rules []registry.Rule) {
	if len(rules) == 0 {
		fmt.Fprintln(w, "acl      (none: only the broker's ACL applies)")
		return
	}
	fmt.Fprintln(w, "acl      (deny wins)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rules {
		action := r.Action
		if action == "" {
			action = registry.ActionAll
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Permission, action, r.Topic)
	}
	tw.Flush()
}

func deviceSetStatus(args []string, s registry.Status, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device "+strings.TrimSuffix(string(s), "d"), stderr)
	env.apiFlags(fs)
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	d, err := st.setStatus(pos[0], s)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "device %s %s\n", d.ID, d.Status)
	return nil
}

func deviceRemove(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device remove", stderr)
	env.apiFlags(fs)
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	if err := st.remove(pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "device %s removed\n", pos[0])
	return nil
}

func deviceRotate(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device rotate", stderr)
	env.apiFlags(fs)
	pos, err := parseWant(fs, args, 2, "a device id and a credential id (moat device show ID lists them)")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	s, err := st.rotate(pos[0], pos[1])
	if err != nil {
		if errors.Is(err, registry.ErrNotRotatable) || strings.Contains(err.Error(), "cannot be rotated") {
			return fmt.Errorf("%w; register the new certificate, key or identity (moat device cred add) and remove the old credential (moat device cred remove)", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "credential %s of device %s rotated: the old secret fails from the next handshake on\n", pos[1], pos[0])
	printSecrets(stdout, &env, pos[0], []secretOut{s})
	return nil
}

func deviceACL(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device acl", stderr)
	env.apiFlags(fs)
	var rules []registry.Rule
	registerACLFlags(fs, &rules)
	clearACL := fs.Bool("clear", false, "remove every rule")
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	if len(rules) == 0 && !*clearACL {
		return usageErrorf("give the new rules (--allow-pub, --deny-pub, --allow-sub, --deny-sub, --allow, --deny) or --clear; the ACL is replaced as a whole")
	}
	if len(rules) > 0 && *clearACL {
		return usageErrorf("--clear takes no rules")
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	d, err := st.setACL(pos[0], rules)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "device %s: ACL replaced\n", d.ID)
	printACL(stdout, d.ACL)
	return nil
}

func deviceCred(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErrorf("cred what? use \"cred add ID ...\" or \"cred remove ID CREDID\"")
	}
	switch args[0] {
	case "add":
		return deviceCredAdd(args[1:], stdin, stdout, stderr)
	case "remove", "rm":
		return deviceCredRemove(args[1:], stdout, stderr)
	}
	return usageErrorf("unknown command \"cred %s\"", args[0])
}

func deviceCredAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var env devEnv
	var cf credFlags
	fs := newFlagSet("device cred add", stderr)
	env.apiFlags(fs)
	cf.register(fs)
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	id := pos[0]
	if err := env.resolve(); err != nil {
		return err
	}
	creds, err := cf.build(stdin, stderr)
	if err != nil {
		return err
	}
	st, err := env.openStore(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	if _, err := st.get(id); err != nil {
		return err
	}
	var ic *issuedCert
	if cf.cert {
		if ic, err = env.issueDeviceCert(id, cf.out); err != nil {
			return err
		}
		creds = append(creds, registry.NewCredential{Kind: registry.KindX509, Certificate: ic.iss.Cert})
	}
	var secrets []secretOut
	var added []registry.NewCredential
	for _, nc := range creds {
		c, s, err := st.addCredential(id, nc)
		if err != nil {
			if ic != nil && nc.Kind == registry.KindX509 && nc.Certificate == ic.iss.Cert {
				ic.undo()
				ic = nil
			}
			printSecrets(stdout, &env, id, secrets) // what was added before stays
			return withHint(fmt.Errorf("adding the %s credential: %w", nc.Kind, err))
		}
		fmt.Fprintf(stdout, "credential %s (%s) added to device %s\n", c.ID, c.Kind, id)
		added = append(added, nc)
		if s != nil {
			secrets = append(secrets, *s)
		}
	}
	d, err := st.get(id)
	if err != nil {
		return err
	}
	printCredentials(stdout, d)
	printSecrets(stdout, &env, id, secrets)
	printCredentialNotes(stdout, &env, st, d, added, ic)
	return nil
}

func deviceCredRemove(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device cred remove", stderr)
	env.apiFlags(fs)
	pos, err := parseWant(fs, args, 2, "a device id and a credential id")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	if err := st.removeCredential(pos[0], pos[1]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "credential %s removed from device %s\n", pos[1], pos[0])
	return nil
}

// subjectIsCN reports whether an issued record's subject is CN=cn (alone or
// followed by other attributes, as pkix.Name.String puts CN first).
func subjectIsCN(subject, cn string) bool {
	return subject == "CN="+cn || strings.HasPrefix(subject, "CN="+cn+",")
}

func deviceRevoke(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device revoke", stderr)
	env.apiFlags(fs)
	reason := fs.String("reason", "unspecified", "revocation reason (keyCompromise, cessationOfOperation, superseded, ...)")
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	id := pos[0]
	r, err := pki.ParseReason(*reason)
	if err != nil {
		return usageErrorf("%v", err)
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	// Disable first: through the API that ends the device's connections
	// at once, whatever the revocation check interval.
	registered := true
	if _, err := st.setStatus(id, registry.StatusDisabled); err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		registered = false
		fmt.Fprintf(stdout, "device %s is not registered; revoking its certificates anyway\n", id)
	} else {
		fmt.Fprintf(stdout, "device %s disabled\n", id)
	}
	ca, err := env.openCA()
	if errors.Is(err, pki.ErrNotInitialized) {
		fmt.Fprintf(stdout, "no built-in CA in %s: no certificates to revoke\n", env.pkiDir())
		if !registered {
			return fmt.Errorf("device %q: %w", id, registry.ErrNotFound)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("the device is disabled, but its certificates could not be revoked: %w", err)
	}
	recs, err := ca.IssuedCerts()
	if err != nil {
		return fmt.Errorf("the device is disabled, but its certificates could not be listed: %w", err)
	}
	revoked, already := 0, 0
	for _, rec := range recs {
		if !subjectIsCN(rec.Subject, id) || (rec.Kind != "client" && rec.Kind != "csr-client") {
			continue
		}
		serial, err := pki.ParseSerial(rec.Serial)
		if err != nil {
			continue
		}
		if ca.IsRevoked(serial) {
			already++
			continue
		}
		if err := ca.Revoke(serial, r); err != nil {
			if errors.Is(err, pki.ErrAlreadyRevoked) {
				already++
				continue
			}
			return fmt.Errorf("revoking %s: %w", rec.Serial, err)
		}
		revoked++
		fmt.Fprintf(stdout, "revoked certificate %s (%s, valid until %s)\n", rec.Serial, pki.ReasonString(r), rec.NotAfter.Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "%d certificate(s) of CN=%s revoked, %d already revoked; CRL: %s\n", revoked, id, already, ca.CRLFile())
	return nil
}

func devicePSKDerive(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device psk derive", stderr)
	env.apiFlags(fs)
	identity := fs.String("identity", "", "PSK identity (default: the device's fleet-derived credential, else the device id)")
	pos, err := parseWant(fs, args, 1, "one device id")
	if err != nil {
		return err
	}
	id := pos[0]
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	ident := *identity
	d, err := st.get(id)
	switch {
	case err == nil:
		var derived, stored []string
		for _, c := range d.Credentials {
			switch {
			case c.Kind == registry.KindPSK && c.Derived:
				derived = append(derived, c.Identity)
			case c.Kind == registry.KindPSK || c.Kind == registry.KindECDH:
				stored = append(stored, c.Identity)
			}
		}
		if ident == "" {
			ident = id
			if len(derived) > 0 {
				ident = derived[0]
			}
		}
		switch {
		case slices.Contains(stored, ident):
			fmt.Fprintf(stderr, "moat: note: identity %q of device %s has its own (not fleet-derived) key; the broker accepts that key, not this one\n", ident, id)
		case !slices.Contains(derived, ident):
			fmt.Fprintf(stderr, "moat: note: device %s has no fleet-derived psk credential for identity %q; the broker refuses this key until one is added (moat device cred add %s --fleet-psk)\n", id, ident, id)
		case !d.Enabled():
			fmt.Fprintf(stderr, "moat: note: device %s is disabled; the broker refuses this key until it is enabled\n", id)
		}
	case errors.Is(err, registry.ErrNotFound):
		if ident == "" {
			ident = id
		}
		fmt.Fprintf(stderr, "moat: note: device %s is not registered yet; register it with `moat device add %s --fleet-psk` before it connects\n", id, id)
	default:
		return err
	}
	k, err := st.derivePSK(ident)
	if err != nil {
		return withHint(err)
	}
	kh := hex.EncodeToString(k)
	fmt.Fprintf(stdout, "identity  %s\nkey       %s\n  mosquitto_pub -h HOST -p 8883 --psk %s --psk-identity %s -t test -m hello\n", ident, kh, kh, ident)
	return nil
}

func deviceFleetKey(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device fleet-key", stderr)
	env.apiFlags(fs)
	replace := fs.Bool("replace", false, "replace an existing fleet key (every derived PSK changes)")
	_, err := parseWant(fs, args, 0, "no arguments")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	k, err := st.setFleetKey(*replace)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fleet key set (stored sealed; shown once, keep it offline for provisioning tools):\n  %s\n", hex.EncodeToString(k))
	fmt.Fprintln(stdout, "A device's PSK is HMAC-SHA256(fleet key, identity): moat device psk derive ID prints it.")
	return nil
}

func deviceECDHKey(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("device ecdh-key", stderr)
	env.apiFlags(fs)
	_, err := parseWant(fs, args, 0, "no arguments")
	if err != nil {
		return err
	}
	st, err := env.open(stderr)
	if err != nil {
		return err
	}
	defer st.close()
	pub, err := st.ecdhPublicKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, hex.EncodeToString(pub))
	return nil
}

// ---------------------------------------------------------------------
// moat keygen

func keygenCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, keygenUsage)
		return 0
	}
	return exitCode("moat keygen", keygen(args, stdout, stderr), stderr)
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	out := fs.String("out", ".", "output directory")
	name := fs.String("name", "device", "file name stem and certificate CN (use the device id)")
	validity := durationFlag{d: 10 * 365 * 24 * time.Hour}
	fs.Var(&validity, "validity", "certificate validity (the pin does not depend on it)")
	ecdhMode := fs.Bool("ecdh", false, "make an X25519 key pair for an ECDH credential instead")
	keyFile := fs.String("key", "", "--ecdh: use this X25519 private key (PEM) instead of making one")
	brokerPub := fs.String("broker-pub", "", "--ecdh: the broker's X25519 public key, hex (moat device ecdh-key)")
	identity := fs.String("identity", "", "--ecdh: the PSK identity (the device id unless registered otherwise)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("unexpected argument %q", pos[0])
	}
	if *name == "" || *name != filepath.Base(*name) || *name == "." || *name == ".." {
		return usageErrorf("--name %q must be a plain file name", *name)
	}
	if !*ecdhMode {
		if *keyFile != "" || *brokerPub != "" || *identity != "" {
			return usageErrorf("--key, --broker-pub and --identity go with --ecdh")
		}
		return keygenPinned(*out, *name, validity.d, stdout)
	}
	if (*brokerPub == "") != (*identity == "") {
		return usageErrorf("--broker-pub and --identity go together")
	}
	return keygenECDH(*out, *name, *keyFile, *brokerPub, *identity, stdout)
}

// keygenPinned writes NAME.key and NAME.pem: an ECDSA P-256 key and a
// self-signed clientAuth certificate holding it.
func keygenPinned(dir, name string, validity time.Duration, stdout io.Writer) error {
	if validity <= 0 {
		return usageErrorf("--validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return err
	}
	defer clear(keyPEM)
	keyPath, certPath := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
	if err := writeNewFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNewFile(certPath, pki.CertsPEM(cert), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	pin := registry.SPKISHA256(cert)
	fmt.Fprintf(stdout, "key          %s (mode 0600: stays on the device)\ncertificate  %s (self-signed, clientAuth, CN=%s, valid until %s)\npin          %s\n",
		keyPath, certPath, name, cert.NotAfter.UTC().Format(time.RFC3339), hex.EncodeToString(pin[:]))
	fmt.Fprintf(stdout, "register it:  moat device add %s --pin %s\n", name, hex.EncodeToString(pin[:]))
	fmt.Fprintln(stdout, "The device connects over TLS 1.3 presenting this certificate; no CA is involved.")
	return nil
}

// keygenECDH makes (or loads) an X25519 key pair, prints its public key
// and, given the broker's public key, the device's PSK.
func keygenECDH(dir, name, keyFile, brokerPubHex, identity string, stdout io.Writer) error {
	var priv *ecdh.PrivateKey
	if keyFile != "" {
		k, err := readX25519Key(keyFile)
		if err != nil {
			return err
		}
		priv = k
		fmt.Fprintf(stdout, "X25519 key   %s\n", keyFile)
	} else {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		defer clear(der)
		p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		defer clear(p)
		path := filepath.Join(dir, name+".x25519.key")
		if err := writeNewFile(path, p, 0o600); err != nil {
			return err
		}
		priv = k
		fmt.Fprintf(stdout, "X25519 key   %s (mode 0600: stays on the device)\n", path)
	}
	pub := hex.EncodeToString(priv.PublicKey().Bytes())
	fmt.Fprintf(stdout, "public key   %s\nregister it: moat device add ID --ecdh-pub %s\n", pub, pub)
	if brokerPubHex == "" {
		return nil
	}
	bp, err := hex.DecodeString(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(brokerPubHex)))
	if err != nil || len(bp) != 32 {
		return usageErrorf("--broker-pub: want 32 bytes of hex (moat device ecdh-key prints it)")
	}
	psk, err := registry.DeviceECDHPSK(priv, bp, identity)
	if err != nil {
		return err
	}
	defer clear(psk)
	kh := hex.EncodeToString(psk)
	fmt.Fprintf(stdout, "\nPSK (derived on the device, never sent; keep it secret)\n  identity  %s\n  key       %s\n", identity, kh)
	fmt.Fprintf(stdout, "  mosquitto_pub -h HOST -p 8883 --psk %s --psk-identity %s -t test -m hello\n", kh, identity)
	return nil
}

func readX25519Key(path string) (*ecdh.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	clear(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	priv, ok := k.(*ecdh.PrivateKey)
	if !ok || priv.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%s: not an X25519 private key", path)
	}
	return priv, nil
}

// writeNewFile creates path with perm; an existing file is not replaced.
func writeNewFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// ---------------------------------------------------------------------
// moat keys rotate

func keysCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return 2
	}
	switch args[0] {
	case "rotate":
		return exitCode("moat keys rotate", keysRotate(args[1:], stdout, stderr), stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, keysUsage)
		return 0
	}
	fmt.Fprintf(stderr, "moat keys: unknown command %q\n\n%s", args[0], keysUsage)
	return 2
}

func keysRotate(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("keys rotate", stderr)
	env.dirFlags(fs)
	newKeyFile := fs.String("new-key-file", "", "the new master key (64 hex digits, mode 0600); default: a new random key")
	_, err := parseWant(fs, args, 0, "no arguments")
	if err != nil {
		return err
	}
	if err := env.resolve(); err != nil {
		return err
	}
	mkPath := env.masterKeyFile
	oldPath, newPath := mkPath+".old", mkPath+".new"
	if _, err := os.Stat(mkPath); err != nil {
		if os.Getenv(envMasterKey) != "" {
			return fmt.Errorf("the master key comes from $%s: keys rotate replaces a master key file (%s); write the key there first", envMasterKey, mkPath)
		}
		return fmt.Errorf("no master key file: %w", err)
	}
	if _, err := os.Stat(oldPath); err == nil {
		return fmt.Errorf("%s exists (from an earlier rotation): move it somewhere safe or delete it first", oldPath)
	}
	if _, err := os.Stat(newPath); err == nil {
		return fmt.Errorf("%s exists (an interrupted rotation?): find out which key the registry and the CA open with before deleting it", newPath)
	}
	oldReg, err := registry.LoadMasterKeyFile(mkPath)
	if err != nil {
		return err
	}
	oldPKI, err := pki.LoadMasterKey(mkPath, "")
	if err != nil {
		return err
	}

	// Everything that is sealed, opened with the old key before anything
	// changes. An open registry also proves that no broker runs.
	var reg *registry.Registry
	if _, err := os.Stat(env.registryPath()); err == nil {
		reg, err = registry.Open(env.registryPath(), oldReg, nil)
		if errors.Is(err, registry.ErrInUse) {
			return fmt.Errorf("refusing: the broker is running (%s is locked); keys rotate works offline only: stop the broker first", env.registryPath())
		}
		if err != nil {
			return err
		}
		defer func() {
			if reg != nil {
				reg.Close()
			}
		}()
	}
	var ca *pki.CA
	if _, err := os.Stat(filepath.Join(env.pkiDir(), "ca.json")); err == nil {
		if ca, err = pki.Open(env.pkiDir(), oldPKI); err != nil {
			return err
		}
	}

	// The new key, as master.key.new (0600).
	var newReg *registry.MasterKey
	if *newKeyFile != "" {
		if newReg, err = registry.LoadMasterKeyFile(*newKeyFile); err != nil {
			return err
		}
		b, err := os.ReadFile(*newKeyFile)
		if err != nil {
			return err
		}
		err = writeNewFile(newPath, b, 0o600)
		clear(b)
		if err != nil {
			return err
		}
	} else if newReg, err = registry.WriteMasterKeyFile(newPath); err != nil {
		return err
	}
	newPKI, err := pki.LoadMasterKey(newPath, "")
	if err != nil {
		os.Remove(newPath)
		return err
	}
	if probe, err := oldReg.Seal([]byte("moat")); err == nil {
		if _, err := newReg.Open(probe); err == nil {
			os.Remove(newPath)
			return errors.New("the new master key is the old one")
		}
	}

	devices := 0
	if reg != nil {
		devices = reg.Len()
		if err := reg.RotateMasterKey(newReg); err != nil {
			// RotateMasterKey changes nothing unless its transaction
			// committed; after that only the compaction can fail, which
			// leaves the registry rotated. Find out which it was.
			reg.Close()
			reg = nil
			if r2, err2 := registry.Open(env.registryPath(), newReg, nil); err2 == nil {
				reg = r2
				fmt.Fprintf(stderr, "moat: warning: %v\n", err)
			} else {
				os.Remove(newPath)
				return fmt.Errorf("re-encrypting the registry (nothing changed): %w", err)
			}
		}
	}
	if ca != nil {
		if err := pki.Reseal(env.pkiDir(), "", oldPKI, newPKI); err != nil {
			if reg != nil {
				if rerr := reg.RotateMasterKey(oldReg); rerr != nil {
					return fmt.Errorf("re-sealing the CA keys failed (%v), and so did putting the registry back under the old key (%v): the registry opens with %s, the CA keys with %s", err, rerr, newPath, mkPath)
				}
			}
			os.Remove(newPath)
			return fmt.Errorf("re-sealing the CA keys (nothing changed): %w", err)
		}
	}
	if reg != nil {
		reg.Close()
		reg = nil
	}
	// Swap the files: master.key -> master.key.old, master.key.new ->
	// master.key.
	if err := os.Chmod(mkPath, 0o600); err != nil {
		return fmt.Errorf("everything is re-encrypted under %s, but %s could not be replaced: %w", newPath, mkPath, err)
	}
	if err := os.Rename(mkPath, oldPath); err != nil {
		return fmt.Errorf("everything is re-encrypted under %s, but %s could not be renamed: %w (rename it yourself)", newPath, mkPath, err)
	}
	if err := os.Rename(newPath, mkPath); err != nil {
		return fmt.Errorf("everything is re-encrypted under %s, but it could not be renamed to %s: %w (rename it yourself)", newPath, mkPath, err)
	}
	syncDirOf(mkPath)

	// Check that everything opens with the new key file.
	if _, err := os.Stat(env.registryPath()); err == nil {
		mk, err := registry.LoadMasterKeyFile(mkPath)
		if err != nil {
			return err
		}
		r, err := registry.Open(env.registryPath(), mk, nil)
		if err != nil {
			return fmt.Errorf("after rotation: %w", err)
		}
		r.Close()
	}
	twoTierNote := false
	if ca != nil {
		mk, err := pki.LoadMasterKey(mkPath, "")
		if err != nil {
			return err
		}
		c, err := pki.Open(env.pkiDir(), mk)
		if err != nil {
			return fmt.Errorf("after rotation: %w", err)
		}
		if c.TwoTier() {
			if _, err := os.Stat(filepath.Join(env.pkiDir(), "root.key")); err != nil {
				twoTierNote = true
			}
		}
	}
	fmt.Fprintf(stdout, "master key rotated: %s holds the new key\n", mkPath)
	if _, err := os.Stat(env.registryPath()); err == nil {
		fmt.Fprintf(stdout, "  device registry %s re-encrypted (%d devices)\n", env.registryPath(), devices)
	}
	if ca != nil {
		fmt.Fprintf(stdout, "  CA keys in %s re-sealed\n", env.pkiDir())
	}
	if twoTierNote {
		fmt.Fprintln(stdout, "  the off-line root key is still sealed under the old key: re-seal it where it is kept")
	}
	fmt.Fprintf(stdout, "  the old key is in %s (mode 0600): it still opens backups made before now; keep it safe or destroy it\n", oldPath)
	return nil
}

func syncDirOf(path string) {
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
}

// ---------------------------------------------------------------------
// moat admin token create

func adminCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	switch {
	case args[0] == "help" || args[0] == "-h" || args[0] == "--help":
		fmt.Fprint(stdout, adminUsage)
		return 0
	case args[0] == "token" && len(args) > 1 && args[1] == "create":
		return exitCode("moat admin token create", adminTokenCreate(args[2:], stdout, stderr), stderr)
	}
	fmt.Fprintf(stderr, "moat admin: unknown command %q\n\n%s", strings.Join(args, " "), adminUsage)
	return 2
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func adminTokenCreate(args []string, stdout, stderr io.Writer) error {
	var env devEnv
	fs := newFlagSet("admin token create", stderr)
	env.dirFlags(fs)
	pos, err := parseWant(fs, args, 1, "one token name")
	if err != nil {
		return err
	}
	name := pos[0]
	if !tokenNameRE.MatchString(name) {
		return usageErrorf("token name %q: want 1 to 64 characters of A-Z a-z 0-9 . _ @ -, starting with a letter or digit", name)
	}
	if err := env.resolve(); err != nil {
		return err
	}
	path := env.tokensFile
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, l := range strings.Split(string(existing), "\n") {
		if n, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && n == name {
			return fmt.Errorf("%s already has a token named %q (delete its line to revoke it, then create it again)", path, name)
		}
	}
	tok, rec := admin.GenerateToken(name)
	line := rec.Name + ":" + rec.SHA256 + "\n"
	if len(existing) > 0 && existing[len(existing)-1] != '\n' {
		line = "\n" + line
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		f.Close()
		return err
	}
	_, err = f.WriteString(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(stdout, "admin token %q (shown once; %s keeps only its SHA-256):\n  %s\n", name, path, tok)
	fmt.Fprintf(stdout, "Use it with $%s=<token> or --token-file FILE (mode 0600), or as\n  Authorization: Bearer <token>\n", envAdminToken)
	fmt.Fprintln(stdout, "The broker reads the token file when it starts: restart it to accept this token.")
	return nil
}
