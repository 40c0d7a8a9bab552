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
	"moat/internal/packet"
)

// TestClientsAndDisconnect: the client list shows who is connected, and
// disconnecting by principal closes the live connection with 0x98.
func TestClientsAndDisconnect(t *testing.T) {
	h, err := auth.HashPassword([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	b := brokertest.Start(t, func(c *config.Config) {
		c.Auth.Users = []config.User{{Username: "dev-7", PasswordHash: h}}
	})
	gone := make(chan *paho.Disconnect, 1)
	conn, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { gone <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "c-7", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "dev-7", PasswordFlag: true, Password: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, ci := range b.Server.Clients() {
		if ci.ClientID == "c-7" {
			found = ci.PrincipalID == "dev-7" && ci.Method == "password" && ci.Listener == "tcp" && ci.Remote != ""
		}
	}
	if !found {
		t.Fatalf("client list: %+v", b.Server.Clients())
	}
	start := time.Now()
	if n := b.Server.DisconnectPrincipal("dev-7", ""); n != 1 {
		t.Fatalf("DisconnectPrincipal closed %d connections", n)
	}
	select {
	case d := <-gone:
		if d.ReasonCode != byte(packet.AdministrativeAction) {
			t.Fatalf("reason 0x%02x", d.ReasonCode)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("disconnect took %v", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client not disconnected")
	}
	if b.Server.Disconnect("nobody", packet.AdministrativeAction) {
		t.Fatal("disconnected a client that is not connected")
	}
}
