package devices

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/registry"
)

// liveDevice is a device with a live MQTT 5 session over one transport.
type liveDevice struct {
	name     string
	id       string
	clientID string
	cred     registry.NewCredential
	// dial connects with the current secret (secret nil: the one the
	// device was registered with).
	dial func(e *env, secret []byte) (net.Conn, *paho.Connect, error)
	// refusedOnDisable is the CONNACK reason a disabled device gets, or 0
	// when the handshake itself fails (TLS-PSK: the identity is unknown).
	refusedOnDisable byte
	rotatable        bool
}

const livePassword = "initial-password-1"

func liveDevices(e *env) []liveDevice {
	pskKey := registry.NewRandomKey()
	return []liveDevice{
		{
			name: "password", id: "live-pw", clientID: "live-pw-c",
			cred: registry.NewCredential{Kind: registry.KindPassword, PasswordHash: cheapHash(livePassword)},
			dial: func(e *env, secret []byte) (net.Conn, *paho.Connect, error) {
				pw := []byte(livePassword)
				if secret != nil {
					pw = secret
				}
				return dialTCP(e.t, e.tcp), &paho.Connect{ClientID: "live-pw-c", Username: "live-pw", UsernameFlag: true, Password: pw, PasswordFlag: true}, nil
			},
			refusedOnDisable: rcNotAuthorized, rotatable: true,
		},
		{
			name: "psk", id: "live-psk", clientID: "live-psk-c",
			cred: registry.NewCredential{Kind: registry.KindPSK, Key: pskKey},
			dial: func(e *env, secret []byte) (net.Conn, *paho.Connect, error) {
				k := pskKey
				if secret != nil {
					k = secret
				}
				c, err := dialPSK(e.t, e.tls, "live-psk", k, 0)
				return c, &paho.Connect{ClientID: "live-psk-c"}, err
			},
			rotatable: true,
		},
		{
			name: "x509", id: "live-cert", clientID: "device-1",
			cred: registry.NewCredential{Kind: registry.KindX509, Certificate: e.pki.Client.Cert.Cert},
			dial: func(e *env, _ []byte) (net.Conn, *paho.Connect, error) {
				c, err := e.dialCert(e.pki.Client.TLSCertificate())
				return c, &paho.Connect{ClientID: "device-1"}, err
			},
			refusedOnDisable: rcNotAuthorized,
		},
	}
}

// TestDisableAndRotate: disabling a device or rotating its credential
// closes its live connection with DISCONNECT 0x98 within a second, the
// old secret is refused afterwards, and the new secret works. Another
// device's connection is not touched.
func TestDisableAndRotate(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.add(registry.NewDevice{ID: "bystander", ACL: []registry.Rule{ownTopicRule},
		Credentials: []registry.NewCredential{{Kind: registry.KindPassword, PasswordHash: cheapHash("bystander-pw")}}})
	by := mustConnect(t, dialTCP(t, e.tcp), &paho.Connect{ClientID: "bystander-c", Username: "bystander", UsernameFlag: true, Password: []byte("bystander-pw"), PasswordFlag: true})

	for _, d := range liveDevices(e) {
		t.Run(d.name, func(t *testing.T) {
			e := e.in(t)
			e.add(registry.NewDevice{ID: d.id, ACL: []registry.Rule{ownTopicRule}, Credentials: []registry.NewCredential{d.cred}})
			credID := mustDevice(t, e.reg, d.id).Credentials[0].ID

			// connect with secret; ok reports acceptance, rc is the CONNACK
			// reason of a refusal (0 when the handshake failed).
			connectWith := func(secret []byte) (c *client, rc byte, ok bool) {
				t.Helper()
				conn, cp, err := d.dial(e, secret)
				if err != nil {
					return nil, 0, false
				}
				c, ca, err := connect(t, conn, cp)
				if err != nil {
					if ca == nil {
						t.Fatalf("connect: %v, no CONNACK", err)
					}
					return nil, ca.ReasonCode, false
				}
				return c, 0, true
			}
			live := func(secret []byte) *client {
				t.Helper()
				c, rc, ok := connectWith(secret)
				if !ok {
					t.Fatalf("connect refused (CONNACK 0x%02x; 0 = handshake failed)", rc)
				}
				// The session is the device's: its own topic is allowed,
				// another device's is not.
				if rc := c.publish("devices/"+d.id+"/up", "x"); rc >= 0x80 {
					t.Fatalf("publish to its own topic: 0x%02x", rc)
				}
				if rc := c.publish("devices/bystander/up", "x"); rc != rcNotAuthorized {
					t.Fatalf("publish to another device's topic: 0x%02x, want 0x87", rc)
				}
				return c
			}
			refused := func(secret []byte, want byte, what string) {
				t.Helper()
				if c, rc, ok := connectWith(secret); ok {
					c.close()
					t.Fatalf("%s: accepted", what)
				} else if rc != want {
					t.Fatalf("%s: refused with CONNACK 0x%02x, want 0x%02x (0 = handshake failure)", what, rc, want)
				}
			}

			// Disable.
			c := live(nil)
			t0 := time.Now()
			if _, err := e.reg.SetStatus(d.id, registry.StatusDisabled); err != nil {
				t.Fatal(err)
			}
			c.expectKicked(t0, "disable")
			refused(nil, d.refusedOnDisable, "a disabled device")

			// Enable: the same credential works again.
			if _, err := e.reg.SetStatus(d.id, registry.StatusEnabled); err != nil {
				t.Fatal(err)
			}
			c = live(nil)

			if !d.rotatable {
				if _, err := e.reg.RotateCredential(d.id, credID); !errors.Is(err, registry.ErrNotRotatable) {
					t.Fatalf("rotating an %s credential: %v, want ErrNotRotatable", d.name, err)
				}
				// Removing the device ends its session too.
				t0 = time.Now()
				if err := e.reg.Remove(d.id); err != nil {
					t.Fatal(err)
				}
				c.expectKicked(t0, "remove")
				return
			}

			// Rotate: the old secret fails from the next handshake on.
			// A new password is hashed (argon2id, slow under -race) before
			// the rotation happens; the clock starts when it is committed,
			// which the registry logs before it runs the change hooks.
			secret, err := e.reg.RotateCredential(d.id, credID)
			if err != nil {
				t.Fatal(err)
			}
			t0 = e.logs.recordTime(t, "credential rotated", map[string]string{"device": d.id, "credential": credID})
			c.expectKicked(t0, "rotate")
			oldRC := byte(0) // PSK: the handshake fails
			if d.cred.Kind == registry.KindPassword {
				oldRC = rcBadCredentials
			}
			refused(nil, oldRC, "the old secret after rotation")
			c = live(secret)
			c.close()
		})
	}

	// Replacing the fleet key rotates every derived PSK at once.
	t.Run("fleet-key-replaced", func(t *testing.T) {
		e := e.in(t)
		if err := e.reg.SetFleetKey(registry.NewRandomKey()); err != nil {
			t.Fatal(err)
		}
		e.add(registry.NewDevice{ID: "live-fleet", ACL: []registry.Rule{ownTopicRule},
			Credentials: []registry.NewCredential{{Kind: registry.KindPSK, Derived: true}}})
		oldKey := mustDerive(t, e.reg, "live-fleet")
		conn, err := dialPSK(t, e.tls, "live-fleet", oldKey, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := mustConnect(t, conn, &paho.Connect{ClientID: "live-fleet-c"})
		t0 := time.Now()
		if err := e.reg.SetFleetKey(registry.NewRandomKey()); err != nil {
			t.Fatal(err)
		}
		c.expectKicked(t0, "fleet key replaced")
		if conn, err := dialPSK(t, e.tls, "live-fleet", oldKey, 0); err == nil {
			conn.Close()
			t.Fatal("a PSK derived from the replaced fleet key still works")
		}
		conn, err = dialPSK(t, e.tls, "live-fleet", mustDerive(t, e.reg, "live-fleet"), 0)
		if err != nil {
			t.Fatalf("the PSK derived from the new fleet key: %v", err)
		}
		mustConnect(t, conn, &paho.Connect{ClientID: "live-fleet-c"}).close()
	})

	// The bystander's session survived all of it.
	select {
	case dc := <-by.disc:
		t.Fatalf("the bystander was disconnected: 0x%02x", dc.ReasonCode)
	default:
	}
	if rc := by.publish("devices/bystander/still-here", "x"); rc >= 0x80 {
		t.Fatalf("bystander publish: 0x%02x", rc)
	}
}

func mustDevice(t *testing.T, reg *registry.Registry, id string) *registry.Device {
	t.Helper()
	d, ok := reg.Device(id)
	if !ok {
		t.Fatalf("device %s not found", id)
	}
	return d
}
