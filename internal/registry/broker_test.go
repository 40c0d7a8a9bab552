package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/auth"
	"moat/internal/config"
	"moat/internal/tlspsk"
)

var _ tlspsk.KeyStore = (*Registry)(nil)
var _ auth.Authenticator = (*Authenticator)(nil)

// handshake runs a real TLS handshake between a server that accepts any
// client certificate and checks it with VerifyPeer, and a client that
// always presents cc.
func handshake(t *testing.T, r *Registry, roots *x509.CertPool, server testCert, cc *testCert, maxVersion uint16) (PeerResult, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res PeerResult
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{
			Certificates: []tls.Certificate{server.tls()},
			ClientAuth:   tls.RequireAnyClientCert,
			MinVersion:   tls.VersionTLS12,
			MaxVersion:   maxVersion,
			VerifyConnection: func(cs tls.ConnectionState) error {
				var err error
				res, err = r.VerifyPeer(cs, x509.VerifyOptions{Roots: roots})
				return err
			},
		})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 client certificates are checked after the client
			// finished; read to let the client see the outcome.
			tc.Write([]byte("ok"))
		}
		srvErr <- err
	}()
	pool := x509.NewCertPool()
	pool.AddCert(server.cert)
	cfg := &tls.Config{RootCAs: pool, ServerName: "broker.test", MaxVersion: maxVersion}
	if cc != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := cc.tls()
			return &c, nil
		}
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var b [2]byte
		_, err = conn.Read(b[:])
		conn.Close()
	}
	if se := <-srvErr; se != nil {
		return res, se
	}
	return res, err
}

func TestVerifyPeerOverTLS(t *testing.T) {
	r, _, _ := openTest(t)
	ca := newCA(t, "Client CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	srv := makeCert(t, nil, pkixName("broker.test", ""), false, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, "broker.test")
	pinned := selfSigned(t, "pinned-device")
	unregistered := selfSigned(t, "stranger")
	issued := clientCert(t, ca, "ca-device")
	mustAdd(t, r, NewDevice{ID: "pin-dev", Credentials: []NewCredential{{Kind: KindPinnedKey, Certificate: pinned.cert}}})

	res, err := handshake(t, r, roots, srv, &pinned, tls.VersionTLS13)
	if err != nil || !res.Pinned || res.Device == nil || res.Device.ID != "pin-dev" {
		t.Fatalf("registered pin over TLS 1.3: %+v, %v", res, err)
	}
	if _, err := handshake(t, r, roots, srv, &unregistered, tls.VersionTLS13); !errors.Is(err, ErrPeerRefused) {
		t.Fatalf("unregistered self-signed key: %v, want refusal", err)
	}
	res, err = handshake(t, r, roots, srv, &issued, tls.VersionTLS13)
	if err != nil || res.Pinned || len(res.Chains) == 0 {
		t.Fatalf("CA-issued certificate: %+v, %v", res, err)
	}
	if _, err := handshake(t, r, roots, srv, &pinned, tls.VersionTLS12); !errors.Is(err, ErrPeerRefused) {
		t.Fatalf("pinned key over TLS 1.2: %v, want refusal", err)
	}
	if _, err := handshake(t, r, nil, srv, &pinned, tls.VersionTLS13); err != nil {
		t.Fatalf("pinned key without any client CA: %v", err)
	}
	r.SetStatus("pin-dev", StatusDisabled)
	if _, err := handshake(t, r, roots, srv, &pinned, tls.VersionTLS13); !errors.Is(err, ErrPeerRefused) {
		t.Fatalf("pin of a disabled device: %v, want refusal", err)
	}
	// A pin of a disabled device is refused even when the certificate
	// would chain to a client CA.
	both := clientCert(t, ca, "both")
	mustAdd(t, r, NewDevice{ID: "both", Disabled: true, Credentials: []NewCredential{{Kind: KindPinnedKey, Certificate: both.cert}}})
	if _, err := handshake(t, r, roots, srv, &both, tls.VersionTLS13); !errors.Is(err, ErrPeerRefused) {
		t.Fatalf("disabled pin with a CA-valid certificate: %v", err)
	}
	// No certificate: not VerifyPeer's call.
	if res, err := r.VerifyPeer(tls.ConnectionState{Version: tls.VersionTLS13}, x509.VerifyOptions{}); err != nil || res.Pinned {
		t.Fatalf("no certificate: %+v %v", res, err)
	}
}

func TestVerifyPassword(t *testing.T) {
	r, _, _ := openTest(t)
	_, issued := mustAdd(t, r, NewDevice{ID: "pw", Credentials: []NewCredential{{Kind: KindPassword}}})
	if len(issued) != 1 || len(issued[0].Secret) < 32 {
		t.Fatalf("generated password: %+v", issued)
	}
	gen := issued[0].Secret
	if d, ok := r.VerifyPassword("pw", gen); !ok || d.ID != "pw" {
		t.Fatal("generated password refused")
	}
	if _, ok := r.VerifyPassword("pw", []byte("wrong password")); ok {
		t.Fatal("wrong password accepted")
	}
	if _, ok := r.VerifyPassword("nobody", gen); ok {
		t.Fatal("unknown device accepted")
	}
	r.SetStatus("pw", StatusDisabled)
	if d, ok := r.VerifyPassword("pw", gen); ok || d == nil {
		t.Fatalf("disabled device: %v %v, want the device and false", d, ok)
	}
	if d, ok := r.VerifyPassword("pw", []byte("wrong password")); ok || d != nil {
		t.Fatal("a wrong password revealed the disabled device")
	}
	// One password per device; hashes can be imported.
	if _, _, err := r.AddCredential("pw", NewCredential{Kind: KindPassword, Password: []byte("another one")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("second password: %v", err)
	}
	h, _ := hashPassword([]byte("imported secret"))
	mustAdd(t, r, NewDevice{ID: "imported", Credentials: []NewCredential{{Kind: KindPassword, PasswordHash: h}}})
	if _, ok := r.VerifyPassword("imported", []byte("imported secret")); !ok {
		t.Fatal("imported hash refused")
	}
	for _, nc := range []NewCredential{
		{Kind: KindPassword, PasswordHash: "plain text"},
		{Kind: KindPassword, Password: []byte("short")},
		{Kind: KindPassword, Password: []byte("long enough"), PasswordHash: h},
	} {
		if _, _, err := r.AddCredential("imported", nc); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", nc, err)
		}
	}
}

// The production hash (argon2id) once.
func TestPasswordArgon2id(t *testing.T) {
	if testing.Short() {
		t.Skip("argon2id at production cost")
	}
	saved := hashPassword
	hashPassword = auth.HashPassword
	defer func() { hashPassword = saved }()
	r, _, _ := openTest(t)
	mustAdd(t, r, NewDevice{ID: "argon", Credentials: []NewCredential{{Kind: KindPassword, Password: []byte("argon2id pass")}}})
	if !strings.HasPrefix(r.passwordEntry("argon").hash, "$argon2id$") {
		t.Fatal("not an argon2id hash")
	}
	if _, ok := r.VerifyPassword("argon", []byte("argon2id pass")); !ok {
		t.Fatal("argon2id password refused")
	}
}

func TestRotateCredential(t *testing.T) {
	r, _, _ := openTest(t)
	var events []string
	var mu sync.Mutex
	r.OnChange(func(id string) { mu.Lock(); events = append(events, id); mu.Unlock() })
	short := bytes.Repeat([]byte{1}, 16)
	ca := newCA(t, "CA")
	mustAdd(t, r, NewDevice{ID: "rot", Credentials: []NewCredential{
		{Kind: KindPSK, Identity: "rot", Key: short},
		{Kind: KindPassword, Password: []byte("old password")},
		{Kind: KindX509, Certificate: clientCert(t, ca, "rot").cert},
	}})
	d, _ := r.Device("rot")
	psk, pw, x := d.Credentials[0], d.Credentials[1], d.Credentials[2]

	newKey, err := r.RotateCredential("rot", psk.ID)
	if err != nil || len(newKey) != 16 || bytes.Equal(newKey, short) {
		t.Fatalf("rotate psk: %x, %v (want a new key of the same length)", newKey, err)
	}
	if k, _ := r.LookupPSK("rot"); !bytes.Equal(k, newKey) {
		t.Fatal("old psk still in use after rotation")
	}
	newPW, err := r.RotateCredential("rot", pw.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.VerifyPassword("rot", []byte("old password")); ok {
		t.Fatal("old password accepted after rotation")
	}
	if _, ok := r.VerifyPassword("rot", newPW); !ok {
		t.Fatal("new password refused")
	}
	if _, err := r.RotateCredential("rot", x.ID); !errors.Is(err, ErrNotRotatable) {
		t.Fatalf("rotate x509: %v", err)
	}
	if _, err := r.RotateCredential("rot", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotate unknown credential: %v", err)
	}
	if _, err := r.RotateCredential("nobody", psk.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotate on unknown device: %v", err)
	}
	if d2, _ := r.Device("rot"); d2.Credentials[0].ID != psk.ID {
		t.Fatal("rotation changed the credential id")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, []string{"rot", "rot"}) {
		t.Fatalf("OnChange events %v, want two for the two rotations", events)
	}
}

// OnChange fires for changes that withdraw access only.
func TestOnChangeEvents(t *testing.T) {
	r, _, _ := openTest(t)
	var events []string
	r.OnChange(func(id string) {
		// Hooks run without locks held: calling back in must not deadlock.
		r.Device(id)
		events = append(events, id)
	})
	mustAdd(t, r, NewDevice{ID: "ev", Credentials: []NewCredential{{Kind: KindPSK}}})
	cred, _, err := r.AddCredential("ev", NewCredential{Kind: KindPSK, Identity: "ev2"})
	if err != nil {
		t.Fatal(err)
	}
	acl := []Rule{{Permission: PermissionDeny, Topic: "x/#"}}
	meta := map[string]string{"a": "b"}
	if _, err := r.Update("ev", DeviceUpdate{ACL: &acl, Metadata: &meta}); err != nil {
		t.Fatal(err)
	}
	r.SetStatus("ev", StatusEnabled) // no change
	check := func(want ...string) {
		t.Helper()
		if !slices.Equal(events, want) {
			t.Fatalf("events %v, want %v", events, want)
		}
	}
	check()
	r.SetStatus("ev", StatusDisabled)
	check("ev")
	r.SetStatus("ev", StatusDisabled) // no change
	r.SetStatus("ev", StatusEnabled)
	check("ev")
	if err := r.RemoveCredential("ev", cred.ID); err != nil {
		t.Fatal(err)
	}
	check("ev", "ev")
	if _, ok := r.LookupPSK("ev2"); ok {
		t.Fatal("removed credential still found")
	}
	if err := r.Remove("ev"); err != nil {
		t.Fatal(err)
	}
	check("ev", "ev", "ev")
	if _, ok := r.LookupPSK("ev"); ok {
		t.Fatal("removed device still found")
	}
	if err := r.Remove("ev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestValidation(t *testing.T) {
	r, _, _ := openTest(t)
	pinned := selfSigned(t, "p")
	mustAdd(t, r, NewDevice{ID: "taken", Credentials: []NewCredential{
		{Kind: KindPSK, Identity: "shared"},
		{Kind: KindPinnedKey, Certificate: pinned.cert},
		{Kind: KindX509, Subject: "CN=taken"},
	}})
	pin := SPKISHA256(pinned.cert)
	cases := []struct {
		name string
		nd   NewDevice
		want error
	}{
		{"duplicate id", NewDevice{ID: "taken"}, ErrExists},
		{"empty id", NewDevice{ID: ""}, ErrInvalid},
		{"slash in id", NewDevice{ID: "a/b"}, ErrInvalid},
		{"wildcard in id", NewDevice{ID: "a+"}, ErrInvalid},
		{"dollar id", NewDevice{ID: "$SYS"}, ErrInvalid},
		{"long id", NewDevice{ID: strings.Repeat("a", 129)}, ErrInvalid},
		{"psk identity taken", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPSK, Identity: "shared"}}}, ErrExists},
		{"ecdh identity taken by psk", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindECDH, Identity: "shared", PublicKey: hex.EncodeToString(bytes.Repeat([]byte{9}, 32))}}}, ErrExists},
		{"identity twice in one device", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPSK, Identity: "x"}, {Kind: KindPSK, Identity: "x"}}}, ErrExists},
		{"pin taken", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPinnedKey, SPKISHA256: hex.EncodeToString(pin[:])}}}, ErrExists},
		{"subject taken", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509, Subject: "CN=taken"}}}, ErrExists},
		{"unknown kind", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: "token"}}}, ErrInvalid},
		{"short psk", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPSK, Key: []byte("short")}}}, ErrInvalid},
		{"psk with x509 field", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPSK, Fingerprint: "ab"}}}, ErrInvalid},
		{"x509 two modes", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509, Subject: "CN=a", Fingerprint: strings.Repeat("ab", 32)}}}, ErrInvalid},
		{"x509 no mode", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509}}}, ErrInvalid},
		{"x509 issuer without serial", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509, Issuer: "CN=CA"}}}, ErrInvalid},
		{"x509 bad serial", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509, Issuer: "CN=CA", Serial: "xyz"}}}, ErrInvalid},
		{"x509 bad fingerprint", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509, Fingerprint: "abcd"}}}, ErrInvalid},
		{"x509 unknown subject field", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindX509, Subject: "FOO=bar"}}}, ErrInvalid},
		{"pin bad hex", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPinnedKey, SPKISHA256: "zz"}}}, ErrInvalid},
		{"bad acl topic", NewDevice{ID: "n1", ACL: []Rule{{Permission: PermissionAllow, Topic: "a/#/b"}}}, ErrInvalid},
		{"bad acl permission", NewDevice{ID: "n1", ACL: []Rule{{Permission: "maybe", Topic: "a"}}}, ErrInvalid},
		{"bad acl action", NewDevice{ID: "n1", ACL: []Rule{{Permission: PermissionAllow, Action: "read", Topic: "a"}}}, ErrInvalid},
		{"bad metadata", NewDevice{ID: "n1", Metadata: map[string]string{"": "x"}}, ErrInvalid},
		{"control char identity", NewDevice{ID: "n1", Credentials: []NewCredential{{Kind: KindPSK, Identity: "a\nb"}}}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := r.Add(c.nd)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	if r.Len() != 1 {
		t.Fatalf("%d devices after refused adds", r.Len())
	}
	if _, ok := r.Device("n1"); ok {
		t.Fatal("a refused device was stored")
	}
	// Errors never contain the key a caller gave.
	secret := []byte("0123456789abcdef0123456789abcdef")
	_, _, err := r.Add(NewDevice{ID: "n2", Credentials: []NewCredential{{Kind: KindPSK, Identity: "shared", Key: secret}}})
	if err == nil || strings.Contains(err.Error(), string(secret)) || strings.Contains(err.Error(), hex.EncodeToString(secret)) {
		t.Fatalf("err = %v", err)
	}
}

func TestRotateMasterKey(t *testing.T) {
	r, oldKey, path := openTest(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	if err := r.SetFleetKey(NewRandomKey()); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, r, NewDevice{ID: "m", Credentials: []NewCredential{{Kind: KindPSK, Identity: "m", Key: key}}})
	if _, err := r.BrokerECDHPublicKey(); err != nil {
		t.Fatal(err)
	}
	r.mu.RLock()
	// Records are JSON: the sealed key is in the file as base64.
	oldSealed := []byte(base64.StdEncoding.EncodeToString(r.idx.devices["m"].rec.Credentials[0].SealedKey))
	r.mu.RUnlock()
	if !bytes.Contains(readClosed(t, path), oldSealed) {
		t.Fatal("sanity: sealed key not in the file")
	}
	newKey, _ := NewMasterKey(GenerateMasterKey())
	if err := r.RotateMasterKey(newKey); err != nil {
		t.Fatal(err)
	}
	if k, ok := r.LookupPSK("m"); !ok || !bytes.Equal(k, key) {
		t.Fatal("psk lost in rotation")
	}
	// Still writable after the compaction swapped the file.
	mustAdd(t, r, NewDevice{ID: "after", Credentials: []NewCredential{{Kind: KindPSK}}})
	fleetBefore, _ := r.DerivePSK("x")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(readClosed(t, path), oldSealed) {
		t.Fatal("a blob sealed under the old master key survived in the file")
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("compaction left its temporary file")
	}
	if _, err := Open(path, oldKey, nil); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("old master key: %v, want ErrMasterKey", err)
	}
	r2, err := Open(path, newKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if k, ok := r2.LookupPSK("m"); !ok || !bytes.Equal(k, key) {
		t.Fatal("psk lost after reopen with the new key")
	}
	if f, _ := r2.DerivePSK("x"); !bytes.Equal(f, fleetBefore) {
		t.Fatal("fleet key lost in rotation")
	}
	if r2.Len() != 2 {
		t.Fatalf("%d devices", r2.Len())
	}
}

func TestAuthenticator(t *testing.T) {
	r, _, _ := openTest(t)
	ca := newCA(t, "CA")
	leaf := clientCert(t, ca, "cam")
	pinned := selfSigned(t, "pinned")
	otherKey := selfSigned(t, "other")
	key := bytes.Repeat([]byte{3}, 32)
	mustAdd(t, r, NewDevice{ID: "dev", Credentials: []NewCredential{
		{Kind: KindPSK, Identity: "dev-psk", Key: key},
		{Kind: KindX509, Certificate: leaf.cert},
		{Kind: KindPinnedKey, Certificate: pinned.cert},
		{Kind: KindPassword, Password: []byte("dev password")},
	}})
	mustAdd(t, r, NewDevice{ID: "off", Disabled: true, Credentials: []NewCredential{
		{Kind: KindPSK, Identity: "off-psk"},
		{Kind: KindPassword, Password: []byte("off password")},
	}})
	static, err := auth.NewStatic(nil)
	if err != nil {
		t.Fatal(err)
	}
	next := &auth.Transport{Next: static}
	a := &Authenticator{Registry: r, Next: next}
	strict := &Authenticator{Registry: r}
	fp := CertFingerprint(leaf.cert)
	pin := SPKISHA256(pinned.cert)
	bg := context.Background()
	withLeaf := WithPeerCertificate(bg, leaf.cert)
	cases := []struct {
		name       string
		a          *Authenticator
		ctx        context.Context
		req        auth.Request
		wantID     string
		wantMethod auth.Method
		wantErr    error
	}{
		{"psk", a, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPSK, ID: "dev-psk", Attrs: map[string]string{"tls_version": "TLS 1.3"}}}, "dev", auth.MethodPSK, nil},
		{"psk of disabled device", a, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPSK, ID: "off-psk"}}, "", "", auth.ErrNotAuthorized},
		{"unknown psk to next", a, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPSK, ID: "file-psk"}}, "file-psk", auth.MethodPSK, nil},
		{"unknown psk, no next", strict, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPSK, ID: "file-psk"}}, "", "", auth.ErrNotAuthorized},
		{"cert from context", a, withLeaf, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodCert, ID: "cam"}}, "dev", auth.MethodCert, nil},
		{"cert by fingerprint attribute", a, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodCert, ID: "cam", Attrs: map[string]string{"fingerprint": hex.EncodeToString(fp[:])}}}, "dev", auth.MethodCert, nil},
		{"unregistered cert to next", a, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodCert, ID: "someone", Attrs: map[string]string{"fingerprint": strings.Repeat("00", 32)}}}, "someone", auth.MethodCert, nil},
		{"pinned from context", a, WithPeerCertificate(bg, pinned.cert), auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPinnedKey, ID: "x"}}, "dev", auth.MethodPinnedKey, nil},
		{"pinned from attribute", a, bg, auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPinnedKey, ID: "x", Attrs: map[string]string{AttrSPKISHA256: hex.EncodeToString(pin[:])}}}, "dev", auth.MethodPinnedKey, nil},
		{"unregistered pin never reaches next", a, WithPeerCertificate(bg, otherKey.cert), auth.Request{Transport: &auth.TransportIdentity{Method: auth.MethodPinnedKey, ID: "x"}}, "", "", auth.ErrNotAuthorized},
		{"password", a, bg, auth.Request{Username: "dev", HasUsername: true, Password: []byte("dev password"), HasPassword: true}, "dev", auth.MethodPassword, nil},
		{"wrong password", a, bg, auth.Request{Username: "dev", HasUsername: true, Password: []byte("nope nope"), HasPassword: true}, "", "", auth.ErrBadCredentials},
		{"password of disabled device", a, bg, auth.Request{Username: "off", HasUsername: true, Password: []byte("off password"), HasPassword: true}, "", "", auth.ErrNotAuthorized},
		{"wrong password of disabled device", a, bg, auth.Request{Username: "off", HasUsername: true, Password: []byte("guess guess"), HasPassword: true}, "", "", auth.ErrBadCredentials},
		{"unknown user to next", a, bg, auth.Request{Username: "bob", HasUsername: true, Password: []byte("x"), HasPassword: true}, "", "", auth.ErrBadCredentials},
		{"unknown user, no next", strict, bg, auth.Request{Username: "bob", HasUsername: true, Password: []byte("x"), HasPassword: true}, "", "", auth.ErrBadCredentials},
		{"anonymous to next", a, bg, auth.Request{AllowAnonymous: true}, "", auth.MethodAnonymous, nil},
		{"anonymous, no next", strict, bg, auth.Request{AllowAnonymous: true}, "", "", auth.ErrNotAuthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.a.Authenticate(c.ctx, &c.req)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "password") && strings.Contains(err.Error(), string(c.req.Password)) && len(c.req.Password) > 1 {
					t.Fatalf("error contains the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != c.wantID || p.Method != c.wantMethod {
				t.Fatalf("principal %s, want %s:%s", p, c.wantMethod, c.wantID)
			}
			if c.wantID == "dev" {
				if p.Username != "dev" || p.Attrs[AttrDevice] != "dev" || p.Attrs[AttrCredential] == "" || p.Attrs[AttrCredentialKind] == "" {
					t.Fatalf("principal %+v", p)
				}
			}
		})
	}
	// Transport attributes are kept.
	p, _ := a.Authenticate(bg, &cases[0].req)
	if p.Attrs["tls_version"] != "TLS 1.3" || p.Attrs[AttrCredentialKind] != "psk" {
		t.Fatalf("attrs %v", p.Attrs)
	}
	// A device disabled after the handshake is refused at CONNECT.
	r.SetStatus("dev", StatusDisabled)
	if _, err := a.Authenticate(withLeaf, &cases[4].req); !errors.Is(err, auth.ErrNotAuthorized) {
		t.Fatalf("disabled cert device: %v", err)
	}
}

func TestAuthorizer(t *testing.T) {
	r, _, _ := openTest(t)
	mustAdd(t, r, NewDevice{ID: "s1", ACL: []Rule{
		{Permission: PermissionAllow, Action: ActionPublish, Topic: "sensors/%i/#"},
		{Permission: PermissionDeny, Action: ActionPublish, Topic: "sensors/%i/secret"},
		{Permission: PermissionAllow, Action: ActionSubscribe, Topic: "cmd/%c/#"},
	}})
	mustAdd(t, r, NewDevice{ID: "narrow", ACL: []Rule{{Permission: PermissionDeny, Topic: "admin/#"}}})
	mustAdd(t, r, NewDevice{ID: "open"})
	mustAdd(t, r, NewDevice{ID: "off", Disabled: true})
	az := r.Authorizer()
	dev := func(id string) *auth.Principal {
		return &auth.Principal{ID: id, Method: auth.MethodPSK, Username: id, Attrs: map[string]string{AttrDevice: id}}
	}
	type check struct {
		p      *auth.Principal
		client string
		op     string // pub, sub, recv
		topic  string
		want   bool
	}
	checks := []check{
		{dev("s1"), "c1", "pub", "sensors/s1/temp", true},
		{dev("s1"), "c1", "pub", "sensors/s1/secret", false}, // deny wins
		{dev("s1"), "c1", "pub", "sensors/s2/temp", false},   // allowlist
		{dev("s1"), "c1", "pub", "other", false},
		{dev("s1"), "c1", "sub", "cmd/c1/#", true},
		{dev("s1"), "c1", "sub", "cmd/c2/#", false},
		{dev("s1"), "c1", "recv", "cmd/c1/reboot", true},
		{dev("s1"), "c1", "recv", "sensors/s1/temp", false},
		{dev("narrow"), "c", "pub", "anything", true}, // deny rules only narrow
		{dev("narrow"), "c", "pub", "admin/x", false},
		{dev("narrow"), "c", "sub", "#", false}, // overlaps the denied subtree
		{dev("open"), "c", "pub", "x", true},
		{dev("off"), "c", "pub", "x", false},
		{dev("gone"), "c", "pub", "x", false},                                                    // registry principal whose device was removed
		{&auth.Principal{ID: "config-user", Method: auth.MethodPassword}, "c", "pub", "x", true}, // not ours: neutral
		{nil, "c", "pub", "x", true},
	}
	for i, c := range checks {
		var got bool
		switch c.op {
		case "pub":
			got = az.CanPublish(c.p, c.client, c.topic)
		case "sub":
			got = az.CanSubscribe(c.p, c.client, c.topic)
		case "recv":
			got = az.CanReceive(c.p, c.client, c.topic)
		}
		if got != c.want {
			id := "<nil>"
			if c.p != nil {
				id = c.p.ID
			}
			t.Errorf("%d: %s %s %s %q = %v, want %v", i, id, c.client, c.op, c.topic, got, c.want)
		}
	}
	// Combined with a configuration ACL: both must allow.
	cfgACL, err := auth.NewACL([]config.ACLRule{{Permission: "allow", Topic: "sensors/#"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	all := auth.AllOf(cfgACL, az)
	if !all.CanPublish(dev("s1"), "c1", "sensors/s1/t") || all.CanPublish(dev("s1"), "c1", "sensors/s1/secret") || all.CanPublish(dev("open"), "c", "x") {
		t.Fatal("AllOf(config ACL, registry) does not make both decide")
	}
	// Rule changes apply at once.
	acl := []Rule{{Permission: PermissionDeny, Topic: "#"}}
	r.Update("open", DeviceUpdate{ACL: &acl})
	if az.CanPublish(dev("open"), "c", "x") {
		t.Fatal("updated ACL not applied")
	}
}

// Lookups run concurrently with mutations (run with -race).
func TestConcurrentLookupsAndMutations(t *testing.T) {
	r, _, _ := openTest(t)
	key := bytes.Repeat([]byte{5}, 32)
	mustAdd(t, r, NewDevice{ID: "stable", Credentials: []NewCredential{{Kind: KindPSK, Key: key}}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			az := r.Authorizer()
			p := &auth.Principal{ID: "stable", Method: auth.MethodPSK}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if k, ok := r.LookupPSK("stable"); !ok || !bytes.Equal(k, key) {
					errs <- errors.New("stable device lost during concurrent changes")
					return
				}
				r.LookupPSK("churn-0")
				r.List()
				az.CanPublish(p, "c", "t")
			}
		}()
	}
	for i := range 30 {
		id := fmt.Sprintf("churn-%d", i%3)
		r.Remove(id)
		if _, _, err := r.Add(NewDevice{ID: id, Credentials: []NewCredential{{Kind: KindPSK}}}); err != nil {
			t.Error(err)
		}
		r.SetStatus(id, StatusDisabled)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestClosedRegistry(t *testing.T) {
	r, _, _ := openTest(t)
	mustAdd(t, r, NewDevice{ID: "a", Credentials: []NewCredential{{Kind: KindPSK}}})
	r.Close()
	if _, _, err := r.Add(NewDevice{ID: "b"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if _, ok := r.LookupPSK("a"); !ok {
		t.Fatal("lookups stop after Close")
	}
}

// PSKStore: the registry first; only unknown identities reach the
// fallback, so a psk_file entry cannot revive a disabled device.
func TestPSKStoreFallback(t *testing.T) {
	r, _, _ := openTest(t)
	regKey := bytes.Repeat([]byte{1}, 32)
	fileKey := bytes.Repeat([]byte{2}, 32)
	mustAdd(t, r, NewDevice{ID: "reg", Credentials: []NewCredential{{Kind: KindPSK, Identity: "both", Key: regKey}}})
	mustAdd(t, r, NewDevice{ID: "off", Disabled: true, Credentials: []NewCredential{{Kind: KindPSK, Identity: "disabled", Key: regKey}}})
	file := tlspsk.KeyStoreFunc(func(id string) ([]byte, bool) {
		if id == "both" || id == "disabled" || id == "file-only" {
			return bytes.Clone(fileKey), true
		}
		return nil, false
	})
	var ks tlspsk.KeyStore = r.PSKStore(file)
	if k, ok := ks.LookupPSK("both"); !ok || !bytes.Equal(k, regKey) {
		t.Fatal("registry does not win over the fallback")
	}
	if k, ok := ks.LookupPSK("file-only"); !ok || !bytes.Equal(k, fileKey) {
		t.Fatal("unknown identity not passed to the fallback")
	}
	if _, ok := ks.LookupPSK("disabled"); ok {
		t.Fatal("disabled device revived by the fallback")
	}
	if _, ok := ks.LookupPSK("nobody"); ok {
		t.Fatal("unknown everywhere but found")
	}
	if _, ok := r.PSKStore(nil).LookupPSK("file-only"); ok {
		t.Fatal("nil fallback found something")
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	mk, _ := NewMasterKey(GenerateMasterKey())
	_, err := Open(t.TempDir()+"/no/such/dir/registry.db", mk, nil)
	if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing directory: %v", err)
	}
	if _, err := Open(t.TempDir()+"/registry.db", nil, nil); !errors.Is(err, ErrMasterKey) {
		t.Fatalf("no key protector: %v", err)
	}
}
