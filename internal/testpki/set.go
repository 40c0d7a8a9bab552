package testpki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// Files is an issued certificate together with the files it was written to.
type Files struct {
	*Cert
	CertFile string // leaf and chain
	KeyFile  string // PKCS#8
}

// Set is the standard test PKI: a root and an intermediate CA, a server
// certificate for 127.0.0.1/::1/localhost, and client certificates good and
// bad. Every end-entity certificate except Untrusted is issued by the
// intermediate, so its file holds the leaf and the intermediate.
type Set struct {
	Dir          string
	Root         *CA
	Intermediate *CA
	OtherRoot    *CA    // a CA nobody trusts
	CAFile       string // the root alone: the --cafile of clients and the client_ca of the broker

	Server *Files // CN=moat-test-server; SANs localhost, 127.0.0.1, ::1; EKU serverAuth

	// Client is CN=device-1, OU=fleet-a, O=moat test, UID=uid-0001, with
	// SANs DNS device-1.moat.test, email device-1@moat.test and URI
	// spiffe://moat.test/device/device-1; EKU clientAuth.
	Client *Files
	// Client2 is the same for device-2 (OU=fleet-b, UID=uid-0002).
	Client2 *Files
	// Expired is device-1's subject, expired a day ago.
	Expired *Files
	// Untrusted is device-1's subject issued by OtherRoot.
	Untrusted *Files
	// NoEKU is CN=device-noeku without an extended key usage extension.
	NoEKU *Files
	// ServerAuthOnly is CN=device-serverauth with EKU serverAuth only.
	ServerAuthOnly *Files
}

// Device returns the Spec of a client certificate for device n in the
// style of Set.Client (CN=device-n, OU=fleet-<letter>, UID=uid-000n).
func Device(n int) Spec {
	name := fmt.Sprintf("device-%d", n)
	return Spec{
		Subject: pkix.Name{
			CommonName:         name,
			OrganizationalUnit: []string{fmt.Sprintf("fleet-%c", 'a'+rune(n-1)%26)},
			Organization:       []string{"moat test"},
		},
		UID:    fmt.Sprintf("uid-%04d", n),
		DNS:    []string{name + ".moat.test"},
		Emails: []string{name + "@moat.test"},
		URIs:   []string{"spiffe://moat.test/device/" + name},
		EKU:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// ServerSpec is the Spec of a server certificate for the loopback addresses.
func ServerSpec() Spec {
	return Spec{
		Subject: pkix.Name{CommonName: "moat-test-server", Organization: []string{"moat test"}},
		DNS:     []string{"localhost"},
		IPs:     []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		EKU:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// Generate creates the standard set and writes it to dir: ca.pem,
// server.pem/.key, client.pem/.key, client2, expired, untrusted, noeku and
// serverauth (.pem/.key each).
func Generate(dir string) (*Set, error) {
	s := &Set{Dir: dir}
	var err error
	if s.Root, err = NewRoot("moat test root CA"); err != nil {
		return nil, err
	}
	if s.Intermediate, err = s.Root.Intermediate("moat test intermediate CA"); err != nil {
		return nil, err
	}
	if s.OtherRoot, err = NewRoot("untrusted root CA"); err != nil {
		return nil, err
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	if err := WriteFile(s.CAFile, CertsPEM(s.Root.Cert.Cert)); err != nil {
		return nil, err
	}

	expired := Device(1)
	expired.NotBefore = time.Now().Add(-72 * time.Hour)
	expired.NotAfter = time.Now().Add(-24 * time.Hour)
	noEKU := Device(1)
	noEKU.Subject.CommonName = "device-noeku"
	noEKU.EKU = nil
	serverAuth := Device(1)
	serverAuth.Subject.CommonName = "device-serverauth"
	serverAuth.EKU = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}

	for _, it := range []struct {
		dst  **Files
		ca   *CA
		spec Spec
		name string
	}{
		{&s.Server, s.Intermediate, ServerSpec(), "server"},
		{&s.Client, s.Intermediate, Device(1), "client"},
		{&s.Client2, s.Intermediate, Device(2), "client2"},
		{&s.Expired, s.Intermediate, expired, "expired"},
		{&s.Untrusted, s.OtherRoot, Device(1), "untrusted"},
		{&s.NoEKU, s.Intermediate, noEKU, "noeku"},
		{&s.ServerAuthOnly, s.Intermediate, serverAuth, "serverauth"},
	} {
		f, err := IssueFiles(it.ca, it.spec, dir, it.name)
		if err != nil {
			return nil, err
		}
		*it.dst = f
	}
	return s, nil
}

// IssueFiles issues spec under ca and writes name.pem and name.key to dir.
func IssueFiles(ca *CA, spec Spec, dir, name string) (*Files, error) {
	c, err := ca.Issue(spec)
	if err != nil {
		return nil, err
	}
	cf, kf, err := c.Write(dir, name)
	if err != nil {
		return nil, err
	}
	return &Files{Cert: c, CertFile: cf, KeyFile: kf}, nil
}

// Pool returns a pool holding the given CAs' certificates.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert.Cert)
	}
	return p
}
