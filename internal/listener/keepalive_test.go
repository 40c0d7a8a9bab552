package listener

import (
	"crypto/tls"
	"net"
	"runtime"
	"syscall"
	"testing"
)

func sockopt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestTCPKeepAliveOnDemand: accepted connections start without TCP
// keep-alive (four system calls saved per connection), and
// EnableTCPKeepAlive finds the TCP connection under TLS and turns it on.
func TestTCPKeepAliveOnDemand(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket options read with Linux constants")
	}
	ln, err := TCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if v := sockopt(t, raw, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 0 {
		t.Fatalf("SO_KEEPALIVE = %d on an accepted connection, want 0", v)
	}
	wrapped := tls.Server(&prefixConn{Conn: raw}, &tls.Config{})
	if !EnableTCPKeepAlive(wrapped) {
		t.Fatal("EnableTCPKeepAlive did not find the TCP connection under TLS")
	}
	if v := sockopt(t, raw, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 1 {
		t.Fatalf("SO_KEEPALIVE = %d after EnableTCPKeepAlive, want 1", v)
	}
	if v := sockopt(t, raw, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); v != 15 {
		t.Fatalf("TCP_KEEPIDLE = %d, want 15", v)
	}
	if EnableTCPKeepAlive(struct{ net.Conn }{raw}) {
		t.Fatal("a wrapper without NetConn should not be looked through")
	}
}
