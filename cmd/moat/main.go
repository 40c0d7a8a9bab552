// Command moat is an MQTT broker built around transport security.
//
//	moat serve [--config moat.toml] [--data-dir DIR]
//	moat passwd [USERNAME]
//	moat version
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"moat/internal/auth"
	"moat/internal/broker"
	"moat/internal/config"
	"moat/internal/memtrim"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `moat — an MQTT 3.1.1 / 5.0 broker built around transport security

Usage:
  moat serve [--config FILE] [--data-dir DIR]   run the broker
  moat passwd [USERNAME]                        hash a password for [[auth.users]]
  moat pki init|issue|sign|revoke|crl|list      the built-in certificate authority
  moat device add|list|show|disable|enable|rotate|remove|acl|cred|revoke|psk derive|fleet-key|ecdh-key
                                                devices and their credentials
  moat keygen [--ecdh]                          a device key pair (pinned key, or X25519 for ECDH)
  moat keys rotate [--new-key-file F]           re-encrypt device secrets and CA keys under a new master key
  moat admin token create NAME                  an admin API token (printed once, stored hashed)
  moat bench conn|pub|sub|pubsub [flags]        load generator for any MQTT broker (moat bench --help)
  moat cert check [--within 30d] [--config F]   certificate and CRL expiry report; exit 1 when due
  moat version                                  print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "passwd":
		return passwd(args[1:], stdin, stdout, stderr)
	case "pki":
		return pkiCmd(args[1:], stdin, stdout, stderr)
	case "device":
		return deviceCmd(args[1:], stdin, stdout, stderr)
	case "keygen":
		return keygenCmd(args[1:], stdout, stderr)
	case "keys":
		return keysCmd(args[1:], stdout, stderr)
	case "admin":
		return adminCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "cert":
		return certCmd(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "moat", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "moat: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML); embedded defaults when empty")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	var addrs defaultAddrs
	fs.StringVar(&addrs.tls, "tls-address", "0.0.0.0:8883", "embedded defaults: MQTT over TLS address")
	fs.StringVar(&addrs.plain, "plain-address", "127.0.0.1:1883", "embedded defaults: plain MQTT address (keep it on loopback)")
	fs.StringVar(&addrs.crl, "crl-address", "0.0.0.0:8089", "embedded defaults: where the CRL is served over HTTP")
	fs.StringVar(&addrs.admin, "admin-address", "127.0.0.1:9883", "embedded defaults: the HTTPS admin API")
	pprofAddr := fs.String("pprof", "", "serve Go profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var cfg *config.Config
	if *cfgPath == "" {
		dir := config.DefaultDataDir
		if *dataDir != "" {
			dir = *dataDir
		}
		var err error
		cfg, err = embeddedConfig(dir, addrs, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "moat:", err)
			return 1
		}
	} else {
		var err error
		cfg, err = config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "moat:", err)
			return 1
		}
		if *dataDir != "" {
			cfg.SetDataDir(*dataDir)
		}
	}
	log := newLogger(cfg.Log, stderr)
	if *cfgPath == "" {
		log.Info("no --config given: running on embedded defaults")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		log.Error("cannot create data directory", "dir", cfg.DataDir, "err", err)
		return 1
	}
	srv, err := broker.New(broker.Options{Config: cfg, Log: log, Version: version})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.Listen(); err != nil {
		log.Error("cannot listen", "err", err)
		return 1
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			log.Error("pprof", "err", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				if err := srv.Reload(); err != nil {
					log.Error("reload failed; keeping the previous certificates", "err", err)
				} else {
					log.Info("reloaded TLS certificates, keys and CAs")
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	go memtrim.Run(ctx, cfg.MemoryTrim.Duration, memtrim.DefaultPolicy, log)
	go memtrim.KeepHeadroom(ctx, memtrim.DefaultHeadroom, log)
	log.Info("moat started", "version", version, "data_dir", cfg.DataDir)
	if err := srv.Serve(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("moat stopped")
	return 0
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	switch c.Level {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// passwd reads a password from stdin (one line) and prints an argon2id hash
// ready for the config file.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	user := ""
	if len(args) > 0 {
		user = args[0]
	}
	fmt.Fprint(stderr, "password: ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "moat passwd:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	fmt.Fprintln(stderr)
	if pw == "" {
		fmt.Fprintln(stderr, "moat passwd: empty password refused")
		return 1
	}
	hash, err := auth.HashPassword([]byte(pw))
	if err != nil {
		fmt.Fprintln(stderr, "moat passwd:", err)
		return 1
	}
	if user != "" {
		fmt.Fprintf(stdout, "[[auth.users]]\nusername = %q\npassword_hash = %q\n", user, hash)
	} else {
		fmt.Fprintln(stdout, hash)
	}
	return 0
}

// servePprof serves the Go runtime profiles on a loopback address, for
// finding where CPU and memory go on a running broker.
func servePprof(addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--pprof %s: profiles are served on loopback addresses only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("serving profiles", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
	return nil
}
