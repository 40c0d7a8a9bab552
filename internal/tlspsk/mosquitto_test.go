package tlspsk

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// readMQTTPacket reads one MQTT control packet (fixed header + body).
func readMQTTPacket(r *bufio.Reader) (typ byte, body []byte, err error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	if n > 1<<16 {
		return 0, nil, fmt.Errorf("packet of %d bytes", n)
	}
	body = make([]byte, n)
	_, err = io.ReadFull(r, body)
	return h >> 4, body, err
}

// mosquitto_pub, speaking MQTT over our TLS-PSK server (a minimal MQTT
// stub: CONNACK, then wait for PUBLISH and DISCONNECT).
func TestInteropMosquittoPub(t *testing.T) {
	pub := needTool(t, "mosquitto_pub")
	for _, tc := range []struct {
		name string
		args []string
		vers uint16
	}{
		{"tls13", nil, VersionTLS13},
		// --tls-version is a minimum for mosquitto: cap the server instead.
		{"tls12", []string{"--tls-version", "tlsv1.2"}, VersionTLS12},
	} {
		t.Run(tc.name, func(t *testing.T) { mosquittoPub(t, pub, tc.args, tc.vers) })
	}
}

func mosquittoPub(t *testing.T, pub string, extra []string, wantVers uint16) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err     error
		payload string
		state   State
	}
	res := make(chan result, 1)
	go func() {
		var r result
		defer func() { res <- r }()
		nc, err := ln.Accept()
		if err != nil {
			r.err = err
			return
		}
		defer nc.Close()
		cfg := serverCfg()
		cfg.MaxVersion = wantVers
		c := Server(nc, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r.err = c.Handshake(ctx); r.err != nil {
			return
		}
		r.state = c.ConnectionState()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for {
			typ, body, err := readMQTTPacket(br)
			if err != nil {
				r.err = err
				return
			}
			switch typ {
			case 1: // CONNECT
				c.Write([]byte{0x20, 2, 0, 0})
			case 3: // PUBLISH QoS 0: topic length, topic, payload
				if len(body) >= 2 {
					tl := int(body[0])<<8 | int(body[1])
					if 2+tl <= len(body) {
						r.payload = string(body[2+tl:])
					}
				}
			case 14: // DISCONNECT
				return
			}
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	args := append([]string{"-h", host, "-p", port, "-t", "moat/test", "-m", "hello over psk",
		"--psk", hex.EncodeToString(testKey), "--psk-identity", testIdentity, "-V", "mqttv311"}, extra...)
	out, err := exec.CommandContext(ctx, pub, args...).CombinedOutput()
	r := <-res
	if err != nil || r.err != nil {
		t.Fatalf("mosquitto_pub: %v %s; server: %v", err, strings.TrimSpace(string(out)), r.err)
	}
	if r.payload != "hello over psk" || r.state.Version != wantVers {
		t.Fatalf("payload %q, version 0x%04x", r.payload, r.state.Version)
	}
	t.Logf("mosquitto_pub negotiated version 0x%04x, %s", r.state.Version, CipherSuiteName(r.state.CipherSuite))
}
