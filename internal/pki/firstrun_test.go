package pki

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
)

func TestOpenOrInit(t *testing.T) {
	mk := testMasterKey(t)
	dir := filepath.Join(t.TempDir(), "pki")
	ca, created, err := OpenOrInit(dir, InitOptions{Protector: mk})
	if err != nil || !created {
		t.Fatalf("first: %v %v", created, err)
	}
	ca2, created, err := OpenOrInit(dir, InitOptions{Protector: mk})
	if err != nil || created || !ca2.Root().Equal(ca.Root()) {
		t.Fatalf("second: %v %v", created, err)
	}
	if _, _, err := OpenOrInit(dir, InitOptions{Protector: testMasterKey(t)}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key must not re-init: %v", err)
	}
	req := LocalServerRequest()
	iss, err := ca.IssueServer(req)
	if err != nil {
		t.Fatal(err)
	}
	if iss.Cert.DNSNames[0] != "localhost" || len(iss.Cert.IPAddresses) != 2 || !iss.Cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Fatalf("names %v %v", iss.Cert.DNSNames, iss.Cert.IPAddresses)
	}
}

func TestReseal(t *testing.T) {
	for _, two := range []bool{false, true} {
		oldKey, newKey := testMasterKey(t), testMasterKey(t)
		dir := filepath.Join(t.TempDir(), "pki")
		if _, err := Init(dir, InitOptions{Protector: oldKey, TwoTier: two}); err != nil {
			t.Fatal(err)
		}
		if err := Reseal(dir, "", newKey, oldKey); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("reseal with wrong from: %v", err)
		}
		if err := Reseal(dir, "", oldKey, newKey); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, oldKey); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("old key still opens: %v", err)
		}
		if _, err := Open(dir, newKey); err != nil {
			t.Fatal(err)
		}
		if two {
			if _, err := OpenRoot(dir, "", newKey); err != nil {
				t.Fatal(err)
			}
		}
	}
}
