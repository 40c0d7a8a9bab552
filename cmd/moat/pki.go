package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"crypto/x509"

	"moat/internal/config"
	"moat/internal/pki"
)

const pkiUsage = `Usage:
  moat pki init [--alg ecdsa-p256|ecdsa-p384|ed25519|rsa-3072] [--two-tier [--root-key PATH]]
                [--cn NAME] [--org NAME] [--crl-url URL] [--plain-keys]
  moat pki issue server --dns NAME... --ip ADDR... [--validity 90d] [--out DIR] [--name NAME]
  moat pki issue client CN [--ou OU]... [--email ADDR]... [--uri URI]... [--validity 365d]
                [--out DIR] [--p12 --p12-password-file FILE]
  moat pki sign FILE.csr [--cn CN] [--ou OU]... [--server --dns NAME... --ip ADDR...] [--validity D] [--out FILE]
  moat pki revoke SERIAL [--reason keyCompromise|superseded|cessationOfOperation|affiliationChanged|...]
  moat pki crl [--out FILE] [--force]
  moat pki list

Every command takes --data-dir DIR (default ./moat-data) or --config FILE.
The CA lives in DIR/pki; its keys are sealed with the master key in
DIR/master.key (created by init, mode 0600) or $MOAT_MASTER_KEY.
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// durationFlag accepts config durations ("90d", "12h").
type durationFlag struct{ d time.Duration }

func (f *durationFlag) String() string { return f.d.String() }
func (f *durationFlag) Set(v string) error {
	var d config.Duration
	if err := d.UnmarshalText([]byte(v)); err != nil {
		return err
	}
	f.d = d.Duration
	return nil
}

// pkiEnv holds the flags every pki command shares.
type pkiEnv struct {
	dataDir string
	cfgPath string
}

func (e *pkiEnv) flags(fs *flag.FlagSet) {
	fs.StringVar(&e.dataDir, "data-dir", "", "data directory (default ./moat-data or the config's data_dir)")
	fs.StringVar(&e.cfgPath, "config", "", "configuration file to take data_dir from")
}

func (e *pkiEnv) dir() (string, error) {
	if e.dataDir != "" {
		return e.dataDir, nil
	}
	if e.cfgPath != "" {
		cfg, err := config.Load(e.cfgPath)
		if err != nil {
			return "", err
		}
		return cfg.DataDir, nil
	}
	return config.DefaultDataDir, nil
}

func masterKeyPath(dataDir string) string { return filepath.Join(dataDir, "master.key") }

// openCA opens the CA of the data directory.
func (e *pkiEnv) openCA() (*pki.CA, error) {
	dir, err := e.dir()
	if err != nil {
		return nil, err
	}
	mk, err := pki.LoadMasterKey(masterKeyPath(dir), "MOAT_MASTER_KEY")
	if err != nil {
		return nil, err
	}
	return pki.Open(filepath.Join(dir, "pki"), mk)
}

// parseInterspersed parses flags that may follow positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func pkiCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pkiUsage)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = pkiInit(args[1:], stdout, stderr)
	case "issue":
		err = pkiIssue(args[1:], stdout, stderr)
	case "sign":
		err = pkiSign(args[1:], stdout, stderr)
	case "revoke":
		err = pkiRevoke(args[1:], stdout, stderr)
	case "crl":
		err = pkiCRL(args[1:], stdout, stderr)
	case "list":
		err = pkiList(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, pkiUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "moat pki: unknown command %q\n\n%s", args[0], pkiUsage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "moat pki:", err)
		return 1
	}
	return 0
}

func pkiInit(args []string, stdout, stderr io.Writer) error {
	var env pkiEnv
	fs := newFlagSet("pki init", stderr)
	env.flags(fs)
	alg := fs.String("alg", "ecdsa-p256", "CA key algorithm: ecdsa-p256, ecdsa-p384, ed25519, rsa-3072")
	twoTier := fs.Bool("two-tier", false, "offline root signing an online intermediate")
	rootKey := fs.String("root-key", "", "where the offline root key is written (two-tier; default DIR/pki/root.key)")
	cn := fs.String("cn", "", "root common name")
	org := fs.String("org", "", "organization")
	crlURL := fs.String("crl-url", "", "CRL distribution point URL put in every certificate, e.g. http://broker.example:8089/pki/crl")
	plain := fs.Bool("plain-keys", false, "store the CA keys unencrypted (not recommended)")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	dir, err := env.dir()
	if err != nil {
		return err
	}
	ka, err := pki.ParseKeyAlg(*alg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var prot pki.KeyProtector
	if *plain {
		fmt.Fprintln(stderr, "warning: CA keys will be stored unencrypted")
		prot = pki.PlainProtector{}
	} else {
		mk, err := pki.LoadMasterKey(masterKeyPath(dir), "MOAT_MASTER_KEY")
		if errors.Is(err, pki.ErrNoMasterKey) {
			mk, err = pki.GenerateMasterKeyFile(masterKeyPath(dir))
			if err == nil {
				fmt.Fprintf(stdout, "created master key %s (keep it safe: it unlocks the CA keys)\n", masterKeyPath(dir))
			}
		}
		if err != nil {
			return err
		}
		prot = mk
	}
	ca, err := pki.Init(filepath.Join(dir, "pki"), pki.InitOptions{
		Protector: prot, KeyAlg: ka, TwoTier: *twoTier, RootKeyFile: *rootKey,
		CommonName: *cn, Organization: *org, CRLURL: *crlURL,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created CA %q (%s) in %s\nclients trust: %s\n", ca.Root().Subject.CommonName, ca.KeyAlg(), ca.Dir(), ca.RootFile())
	if ca.TwoTier() {
		fmt.Fprintf(stdout, "the root key is offline material: move it off this machine\n")
	}
	return nil
}

func pkiIssue(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "server" && args[0] != "client") {
		return fmt.Errorf("issue what? %q: use \"issue server\" or \"issue client CN\"", strings.Join(args, " "))
	}
	kind := args[0]
	var env pkiEnv
	fs := newFlagSet("pki issue "+kind, stderr)
	env.flags(fs)
	var dns, ips, ous, emails, uris stringList
	var validity durationFlag
	fs.Var(&dns, "dns", "DNS name (repeatable)")
	fs.Var(&ips, "ip", "IP address (repeatable)")
	fs.Var(&ous, "ou", "organizational unit (repeatable, client)")
	fs.Var(&emails, "email", "email SAN (repeatable, client)")
	fs.Var(&uris, "uri", "URI SAN (repeatable, client)")
	fs.Var(&validity, "validity", "validity, e.g. 90d (default 90d server, 365d client)")
	alg := fs.String("alg", "ecdsa-p256", "key algorithm")
	out := fs.String("out", ".", "output directory")
	name := fs.String("name", "", "file name stem (default: server / the CN)")
	p12 := fs.Bool("p12", false, "also write a PKCS#12 bundle (client)")
	p12pw := fs.String("p12-password-file", "", "file holding the PKCS#12 password")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	ka, err := pki.ParseKeyAlg(*alg)
	if err != nil {
		return err
	}
	ca, err := env.openCA()
	if err != nil {
		return err
	}
	var iss *pki.Issued
	stem := *name
	if kind == "server" {
		req := pki.ServerRequest{DNS: dns, Validity: validity.d, KeyAlg: ka}
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("--ip %q is not an IP address", s)
			}
			req.IPs = append(req.IPs, ip)
		}
		if len(req.DNS) == 0 && len(req.IPs) == 0 {
			return errors.New("issue server needs at least one --dns or --ip")
		}
		iss, err = ca.IssueServer(req)
		if stem == "" {
			stem = "server"
		}
	} else {
		if len(pos) != 1 {
			return errors.New("issue client needs exactly one common name")
		}
		iss, err = ca.IssueClient(pki.ClientRequest{CommonName: pos[0], OU: ous, Emails: emails, URIs: uris, Validity: validity.d, KeyAlg: ka})
		if stem == "" {
			stem = pos[0]
		}
	}
	if err != nil {
		return err
	}
	files, err := pki.WritePEM(*out, stem, iss)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serial %s, valid until %s\ncertificate: %s\nchain:       %s\nkey:         %s\nCA:          %s\n",
		pki.FormatSerial(iss.Cert.SerialNumber), iss.Cert.NotAfter.Format(time.RFC3339), files.CertFile, files.ChainFile, files.KeyFile, ca.RootFile())
	if *p12 {
		if *p12pw == "" {
			return errors.New("--p12 needs --p12-password-file")
		}
		pw, err := os.ReadFile(*p12pw)
		if err != nil {
			return err
		}
		der, err := pki.PKCS12(iss, strings.TrimRight(string(pw), "\r\n"))
		if err != nil {
			return err
		}
		p := filepath.Join(*out, stem+".p12")
		if err := os.WriteFile(p, der, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pkcs12:      %s\n", p)
	}
	return nil
}

func pkiSign(args []string, stdout, stderr io.Writer) error {
	var env pkiEnv
	fs := newFlagSet("pki sign", stderr)
	env.flags(fs)
	var dns, ips, ous stringList
	var validity durationFlag
	fs.Var(&dns, "dns", "DNS name (repeatable, --server)")
	fs.Var(&ips, "ip", "IP address (repeatable, --server)")
	fs.Var(&ous, "ou", "organizational unit (repeatable)")
	fs.Var(&validity, "validity", "validity, e.g. 365d")
	cn := fs.String("cn", "", "required common name (must match the CSR's)")
	server := fs.Bool("server", false, "sign a server certificate instead of a client one")
	out := fs.String("out", "", "certificate output file (default: stdout)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("sign needs one CSR file")
	}
	csr, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	ca, err := env.openCA()
	if err != nil {
		return err
	}
	var certPEM []byte
	if *server {
		req := pki.ServerRequest{DNS: dns, Validity: validity.d}
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("--ip %q is not an IP address", s)
			}
			req.IPs = append(req.IPs, ip)
		}
		c, err := ca.SignServerCSR(csr, req)
		if err != nil {
			return err
		}
		certPEM = pki.CertsPEM(append([]*x509.Certificate{c}, ca.Chain()[:len(ca.Chain())-1]...)...)
	} else {
		c, err := ca.SignCSR(csr, pki.ClientRequest{CommonName: *cn, OU: ous, Validity: validity.d})
		if err != nil {
			return err
		}
		certPEM = pki.CertsPEM(append([]*x509.Certificate{c}, ca.Chain()[:len(ca.Chain())-1]...)...)
	}
	if *out == "" {
		_, err = stdout.Write(certPEM)
		return err
	}
	return os.WriteFile(*out, certPEM, 0o644)
}

func pkiRevoke(args []string, stdout, stderr io.Writer) error {
	var env pkiEnv
	fs := newFlagSet("pki revoke", stderr)
	env.flags(fs)
	reason := fs.String("reason", "unspecified", "revocation reason")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("revoke needs one serial number (hex, as `moat pki list` prints it)")
	}
	serial, err := pki.ParseSerial(pos[0])
	if err != nil {
		return err
	}
	r, err := pki.ParseReason(*reason)
	if err != nil {
		return err
	}
	ca, err := env.openCA()
	if err != nil {
		return err
	}
	if err := ca.Revoke(serial, r); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s (%s); CRL re-issued: %s\n", pki.FormatSerial(serial), pki.ReasonString(r), ca.CRLFile())
	return nil
}

func pkiCRL(args []string, stdout, stderr io.Writer) error {
	var env pkiEnv
	fs := newFlagSet("pki crl", stderr)
	env.flags(fs)
	out := fs.String("out", "", "write the DER CRL here (default: print where it is)")
	force := fs.Bool("force", false, "sign a new CRL now")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	ca, err := env.openCA()
	if err != nil {
		return err
	}
	var der []byte
	if *force {
		der, err = ca.IssueCRL()
	} else {
		der, err = ca.CRL()
	}
	if err != nil {
		return err
	}
	if *out != "" {
		return os.WriteFile(*out, der, 0o644)
	}
	fmt.Fprintf(stdout, "CRL: %s (%d revoked)\n", ca.CRLFile(), len(ca.Revoked()))
	return nil
}

func pkiList(args []string, stdout, stderr io.Writer) error {
	var env pkiEnv
	fs := newFlagSet("pki list", stderr)
	env.flags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	ca, err := env.openCA()
	if err != nil {
		return err
	}
	recs, err := ca.IssuedCerts()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-34s %-8s %-25s %-8s %s\n", "SERIAL", "KIND", "NOT AFTER", "STATUS", "SUBJECT")
	for _, r := range recs {
		status := "valid"
		if s, err := pki.ParseSerial(r.Serial); err == nil && ca.IsRevoked(s) {
			status = "revoked"
		}
		fmt.Fprintf(stdout, "%-34s %-8s %-25s %-8s %s\n", r.Serial, r.Kind, r.NotAfter.Format(time.RFC3339), status, r.Subject)
	}
	return nil
}
