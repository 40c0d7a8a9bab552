package main

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"moat/internal/config"
)

const certUsage = `Usage:
  moat cert check [--within 30d] [--config moat.toml] [--json] [FILES...]

Reads every certificate, CA bundle and CRL the configuration names (listener
certificates, client_ca bundles, SNI certificates, the built-in CA in
data_dir/pki and its CRLs, the admin certificate) and the FILES given (PEM or
DER certificates and CRLs), and prints one line per certificate or CRL.

A certificate is flagged when it expires inside the window; a CRL when its
nextUpdate falls inside the window or within the last half of its validity
(CRLs are re-signed at half-life), or has passed.

Exit status: 0 nothing inside the window, 1 something expires (or a CRL is
due or stale) inside the window, 2 usage or configuration errors, including
a named file that cannot be read or parsed.
`

// certCheckNow is the clock of `moat cert check` (tests move it).
var certCheckNow = time.Now

// certItem is one certificate or CRL found.
type certItem struct {
	File     string    `json:"file"`
	Origin   string    `json:"origin"`         // where it is named: a config key or "argument"
	Kind     string    `json:"kind,omitempty"` // "certificate" | "crl"
	Subject  string    `json:"subject,omitempty"`
	Issuer   string    `json:"issuer,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"` // certificate NotAfter, CRL nextUpdate
	DaysLeft *int      `json:"days_left,omitempty"`
	Status   string    `json:"status"` // ok | expiring | expired | not_yet_valid | due | stale | error
	Error    string    `json:"error,omitempty"`

	start time.Time // certificate NotBefore, CRL thisUpdate
}

type certReport struct {
	CheckedAt  time.Time  `json:"checked_at"`
	WithinDays float64    `json:"within_days"`
	Problems   int        `json:"problems"`
	Errors     int        `json:"errors"`
	Items      []certItem `json:"items"`
}

func certCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, certUsage)
		return 2
	}
	switch args[0] {
	case "check":
		return certCheck(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, certUsage)
		return 0
	}
	fmt.Fprintf(stderr, "moat cert: unknown command %q\n\n%s", args[0], certUsage)
	return 2
}

// parseWithin accepts Go durations and a day suffix: "30d", "1.5d", "12h".
func parseWithin(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		f, err := strconv.ParseFloat(n, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || f > 100*365 {
			return 0, fmt.Errorf("invalid window %q", s)
		}
		return time.Duration(f * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid window %q (use e.g. 30d or 72h)", s)
	}
	return d, nil
}

func certCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cert check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, certUsage) }
	withinStr := fs.String("within", "30d", "window: flag what expires within it (e.g. 30d, 72h)")
	cfgPath := fs.String("config", "", "configuration file whose certificates and CRLs are checked")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	// Flags may follow file names.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	within, err := parseWithin(*withinStr)
	if err != nil {
		fmt.Fprintln(stderr, "moat cert check:", err)
		return 2
	}
	if *cfgPath == "" && len(files) == 0 {
		fmt.Fprint(stderr, "moat cert check: nothing to check: give --config or files\n\n"+certUsage)
		return 2
	}

	type source struct {
		path, origin string
		optional     bool // a default location: skipped when absent
	}
	var sources []source
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "moat cert check:", err)
			return 2
		}
		for i, l := range cfg.Listeners {
			if l.TLS == nil {
				continue
			}
			p := fmt.Sprintf("listener[%d].tls.", i)
			if l.Name != "" {
				p = fmt.Sprintf("listener %q: tls.", l.Name)
			}
			if l.TLS.Cert != "" {
				sources = append(sources, source{path: l.TLS.Cert, origin: p + "cert"})
			}
			for j, s := range l.TLS.SNI {
				sources = append(sources, source{path: s.Cert, origin: fmt.Sprintf("%ssni[%d].cert", p, j)})
			}
			for _, ca := range l.TLS.ClientCA {
				sources = append(sources, source{path: ca, origin: p + "client_ca"})
			}
		}
		if cfg.DataDir != "" {
			pkiDir := filepath.Join(cfg.DataDir, "pki")
			for _, f := range []string{"root.pem", "intermediate.pem", "crl.der", "root.crl"} {
				sources = append(sources, source{path: filepath.Join(pkiDir, f), origin: "built-in CA", optional: true})
			}
			sources = append(sources, source{path: filepath.Join(cfg.DataDir, "tls", "server.pem"), origin: "built-in server certificate", optional: true})
		}
		if cfg.Admin.Cert != "" {
			sources = append(sources, source{path: cfg.Admin.Cert, origin: "admin.cert"})
		} else if cfg.DataDir != "" {
			sources = append(sources, source{path: filepath.Join(cfg.DataDir, "admin", "server.pem"), origin: "admin (built-in CA)", optional: true})
		}
		for _, ca := range cfg.Admin.ClientCA {
			sources = append(sources, source{path: ca, origin: "admin.client_ca"})
		}
	}
	for _, f := range files {
		sources = append(sources, source{path: f, origin: "argument"})
	}

	now := certCheckNow()
	rep := certReport{CheckedAt: now.UTC(), WithinDays: within.Hours() / 24}
	seen := map[string]bool{}
	for _, s := range sources {
		key := filepath.Clean(s.path)
		if seen[key] {
			continue
		}
		seen[key] = true
		data, err := os.ReadFile(s.path)
		if err != nil && s.optional && errors.Is(err, os.ErrNotExist) {
			continue
		}
		var items []certItem
		if err == nil {
			items, err = parseCertFile(data)
		}
		if err != nil {
			rep.Items = append(rep.Items, certItem{File: s.path, Origin: s.origin, Status: "error", Error: err.Error()})
			rep.Errors++
			continue
		}
		for _, it := range items {
			it.File, it.Origin = s.path, s.origin
			judge(&it, now, within)
			if it.Status != "ok" {
				rep.Problems++
			}
			rep.Items = append(rep.Items, it)
		}
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "moat cert check:", err)
			return 2
		}
	} else {
		printCertTable(stdout, rep)
	}
	switch {
	case rep.Errors > 0:
		return 2
	case rep.Problems > 0:
		return 1
	}
	return 0
}

// parseCertFile returns the certificates and CRLs of a PEM or DER file;
// other PEM blocks (keys) are skipped.
func parseCertFile(data []byte) ([]certItem, error) {
	var out []certItem
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			switch b.Type {
			case "CERTIFICATE", "TRUSTED CERTIFICATE":
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
				}
				out = append(out, certItemOf(c))
			case "X509 CRL":
				rl, err := x509.ParseRevocationList(b.Bytes)
				if err != nil {
					return nil, fmt.Errorf("CRL: %w", err)
				}
				out = append(out, crlItemOf(rl))
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no certificate or CRL in PEM file")
		}
		return out, nil
	}
	if c, err := x509.ParseCertificate(data); err == nil {
		return []certItem{certItemOf(c)}, nil
	}
	if rl, err := x509.ParseRevocationList(data); err == nil {
		return []certItem{crlItemOf(rl)}, nil
	}
	return nil, errors.New("neither a PEM file nor a DER certificate or CRL")
}

func certItemOf(c *x509.Certificate) certItem {
	return certItem{
		Kind: "certificate", Subject: name(c.Subject.String(), c.RawSubject), Issuer: name(c.Issuer.String(), c.RawIssuer),
		Serial: hex.EncodeToString(c.SerialNumber.Bytes()), NotAfter: c.NotAfter.UTC(),
		start: c.NotBefore,
	}
}

func crlItemOf(rl *x509.RevocationList) certItem {
	it := certItem{Kind: "crl", Subject: "CRL of " + name(rl.Issuer.String(), rl.RawIssuer), Issuer: name(rl.Issuer.String(), rl.RawIssuer),
		NotAfter: rl.NextUpdate.UTC(), start: rl.ThisUpdate}
	if rl.Number != nil {
		it.Serial = rl.Number.String()
	}
	return it
}

func name(s string, raw []byte) string {
	if s == "" && len(raw) > 2 {
		return "(non-printable name)"
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// judge sets Status and DaysLeft.
func judge(it *certItem, now time.Time, within time.Duration) {
	start := it.start
	it.Status = "ok"
	if it.NotAfter.IsZero() { // CRL without nextUpdate
		return
	}
	left := it.NotAfter.Sub(now)
	days := int(math.Floor(left.Hours() / 24))
	it.DaysLeft = &days
	switch it.Kind {
	case "certificate":
		switch {
		case now.Before(start):
			it.Status = "not_yet_valid"
		case left <= 0:
			it.Status = "expired"
		case left <= within:
			it.Status = "expiring"
		}
	case "crl":
		window := within
		if half := it.NotAfter.Sub(start) / 2; !start.IsZero() && half < window {
			window = half
		}
		switch {
		case left <= 0:
			it.Status = "stale"
		case left <= window:
			it.Status = "due"
		}
	}
}

func printCertTable(w io.Writer, rep certReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSUBJECT\tNOT AFTER\tDAYS LEFT\tSTATUS")
	for _, it := range rep.Items {
		notAfter, days := "-", "-"
		if !it.NotAfter.IsZero() {
			notAfter = it.NotAfter.Format("2006-01-02 15:04Z")
		}
		if it.DaysLeft != nil {
			days = strconv.Itoa(*it.DaysLeft)
		}
		subject, status := it.Subject, it.Status
		if it.Status == "error" {
			subject, status = "-", "error: "+it.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.File, oneLine(subject), notAfter, days, status)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d checked, %d inside the %s window, %d errors\n",
		len(rep.Items)-rep.Errors, rep.Problems, strconv.FormatFloat(rep.WithinDays, 'f', -1, 64)+"d", rep.Errors)
}

// oneLine keeps hostile subjects from breaking the table.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
