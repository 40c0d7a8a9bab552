// Package brokertest starts a real moat broker on 127.0.0.1:0 for tests and
// returns once it accepts connections. It is imported by tests only.
package brokertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"moat/internal/broker"
	"moat/internal/config"
)

// Broker is a running broker started by Start.
type Broker struct {
	Addr   string // host:port of the first tcp listener
	WSURL  string // ws://host:port/path of the first ws listener, if any
	Config *config.Config
	Server *broker.Server

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	t      testing.TB
}

// Option changes the configuration before the broker starts.
type Option func(*config.Config)

// Start starts a broker with anonymous access, a tcp and a ws listener on
// 127.0.0.1:0 and a temporary data directory; it is stopped when the test
// ends. Set MOAT_TEST_LOG=1 to see the broker's debug log.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	cfg := config.Default()
	cfg.SetDataDir(t.TempDir())
	cfg.Auth.AllowAnonymous = true
	// Unset, so that ApplyDefaults picks "deny" when an option adds ACL
	// rules, as it does for a configuration file.
	cfg.Auth.ACLDefault = ""
	cfg.Listeners = []config.Listener{
		{Name: "tcp", Type: "tcp", Address: "127.0.0.1:0"},
		{Name: "ws", Type: "ws", Address: "127.0.0.1:0", Path: "/mqtt"},
	}
	for _, o := range opts {
		o(cfg)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("brokertest: invalid config: %v", err)
	}
	var w io.Writer = io.Discard
	if os.Getenv("MOAT_TEST_LOG") != "" {
		w = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := broker.New(broker.Options{Config: cfg, Log: log, Version: "test"})
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{Config: cfg, Server: srv, cancel: cancel, done: make(chan error, 1), t: t}
	for _, l := range cfg.Listeners {
		a := srv.Addr(l.Name)
		switch {
		case l.Type == "tcp" && b.Addr == "":
			b.Addr = a.String()
		case l.Type == "ws" && b.WSURL == "":
			b.WSURL = "ws://" + a.String() + l.Path
		}
	}
	go func() { b.done <- srv.Serve(ctx) }()
	// The listeners are bound before Serve runs, so connections queue in the
	// kernel backlog until accepted: the broker is ready now. Check it.
	if b.Addr != "" {
		c, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("brokertest: broker not reachable: %v", err)
		}
		c.Close()
	}
	t.Cleanup(b.Stop)
	return b
}

// Stop shuts the broker down gracefully and waits for it.
func (b *Broker) Stop() {
	b.once.Do(func() {
		b.cancel()
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			b.t.Errorf("brokertest: broker did not stop within 15s")
		}
	})
}
