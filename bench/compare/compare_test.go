package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as the generator when compare
// re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(genEnv) == "1" {
		os.Exit(generator(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestQuickSmoke runs the whole comparison in --quick mode against real
// mosquitto and moat processes. It takes a minute or two and needs
// mosquitto installed, so it runs only with MOAT_BENCH_SMOKE=1.
func TestQuickSmoke(t *testing.T) {
	if os.Getenv("MOAT_BENCH_SMOKE") != "1" {
		t.Skip("set MOAT_BENCH_SMOKE=1 to run the comparison smoke test")
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--quick"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	t.Logf("\n%s", out.String())
	for _, want := range []string{"TLS 1.3 full handshake + CONNECT", "QoS 0 TLS 64 B 1->100", "idle TLS connections, 300", "TLS-PSK 1.2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q row", want)
		}
	}
	// Every scenario produced a figure for both brokers.
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "error:") {
			t.Errorf("failed run: %s", line)
		}
	}
	if strings.Contains(errOut.String(), "error:") {
		t.Errorf("failed runs:\n%s", errOut.String())
	}
}
