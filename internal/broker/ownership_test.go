package broker_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"moat/internal/auth"
	"moat/internal/brokertest"
	"moat/internal/config"
)

func dialV5(t *testing.T, addr string, cp *paho.Connect) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	return c, ca, err
}

// TestSessionBelongsToItsPrincipal: a client id in use by one identity
// cannot be resumed or taken over by another, online or offline.
func TestSessionBelongsToItsPrincipal(t *testing.T) {
	users := make([]config.User, 0, 2)
	for _, u := range []string{"alice", "bob"} {
		h, err := auth.HashPassword([]byte(u + "-secret"))
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, config.User{Username: u, PasswordHash: h})
	}
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = false
		c.Auth.Users = users
	})
	expiry := uint32(600)
	connect := func(user string, clean bool) (*paho.Client, *paho.Connack, error) {
		return dialV5(t, b.Addr, &paho.Connect{
			ClientID: "device-1", CleanStart: clean, KeepAlive: 30,
			UsernameFlag: true, Username: user,
			PasswordFlag: true, Password: []byte(user + "-secret"),
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		})
	}
	alice, _, err := connect("alice", true)
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	// Online takeover by bob is refused, and alice stays connected.
	_, ca, err := connect("bob", false)
	if err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("bob took over alice's live session: err=%v connack=%+v", err, ca)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := alice.Publish(ctx, &paho.Publish{Topic: "x", QoS: 1, Payload: []byte("still here")}); err != nil {
		t.Fatalf("alice lost her connection: %v", err)
	}
	alice.Disconnect(&paho.Disconnect{})
	// Offline resume and clean start by bob are refused too.
	for _, clean := range []bool{false, true} {
		if _, ca, err := connect("bob", clean); err == nil || ca == nil || ca.ReasonCode != 0x87 {
			t.Fatalf("bob resumed alice's session (clean=%v): err=%v connack=%+v", clean, err, ca)
		}
	}
	// Alice herself resumes it.
	_, ca, err = connect("alice", false)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("alice could not resume her session: err=%v connack=%+v", err, ca)
	}
}
