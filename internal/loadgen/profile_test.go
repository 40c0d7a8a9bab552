package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"moat/internal/brokertest"
	"moat/internal/config"
)

// childEnv makes the test binary run as the load generator (Command), so
// that a broker in the test process is profiled without the generator's
// own work in its profiles.
const childEnv = "MOAT_LOADGEN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(Command(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// generate runs the generator in a child process against this process's
// broker and returns its result.
func generate(t *testing.T, args ...string) *Result {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--json", "--quiet", "--broker-pid", strconv.Itoa(os.Getpid()))
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("generator %v: %v %v: %s", args, err, jerr, stderr.String())
	}
	return &res
}

// TestProfileBroker profiles moat's broker, in this process, under the
// comparison's TLS scenarios driven by a generator process: CPU profiles
// per scenario and, for idle connections, where each one's memory goes.
// Set MOAT_BENCH_PROFILE to a directory to run it; inspect with
//
//	go tool pprof -top DIR/cpu-conn-full.prof
//	go tool pprof -sample_index=inuse_space -top DIR/heap-idle.prof
//
// MOAT_BENCH_IDLE sets the idle connection count (default 5000).
func TestProfileBroker(t *testing.T) {
	dir := os.Getenv("MOAT_BENCH_PROFILE")
	if dir == "" {
		t.Skip("set MOAT_BENCH_PROFILE=DIR to profile the broker")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, certFile, keyFile, pskFile := tlsFiles(t)
	b := brokertest.Start(t, func(c *config.Config) {
		c.Log.Level = "error"
		c.Listeners = append(c.Listeners, config.Listener{
			Name: "tls", Type: "tls", Address: "127.0.0.1:0",
			ConnRatePerIP: 1e9, ConnBurstPerIP: 1 << 30,
			TLS: &config.TLS{Cert: certFile, Key: keyFile, PSKFile: pskFile},
		})
	})
	port := portOf(b.Server.Addr("tls").String())
	tlsArgs := []string{"--transport", "tls", "-p", port, "--insecure", "--curves", "x25519"}
	d := "5s"
	cpu := func(name string, args ...string) {
		f, err := os.Create(filepath.Join(dir, "cpu-"+name+".prof"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		res := generate(t, args...)
		pprof.StopCPUProfile()
		f.Close()
		var out bytes.Buffer
		_ = res.WriteTable(&out)
		t.Logf("%s:\n%s", name, out.String())
	}
	cpu("conn-full", append([]string{"conn", "-c", "10000000", "-d", d, "--tls-version", "1.3"}, tlsArgs...)...)
	cpu("conn-resumed", append([]string{"conn", "-c", "10000000", "-d", d, "--tls-version", "1.3", "--resume"}, tlsArgs...)...)
	cpu("psk", "conn", "-c", "10000000", "-d", d, "--transport", "tls-psk", "-p", port, "--tls-version", "1.2",
		"--psk", testPSK, "--psk-identity", "bench")
	cpu("qos0-1to1", append([]string{"pubsub", "--pubs", "1", "--subs", "1", "-d", d}, tlsArgs...)...)
	cpu("qos0-1to100", append([]string{"pubsub", "--pubs", "1", "--subs", "100", "-t", "bench/all", "-d", d}, tlsArgs...)...)

	// Idle connections: memory before, and while the generator holds them.
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("MOAT_BENCH_IDLE")); err == nil && v > 0 {
		n = v
	}
	runtime.GC()
	before := memSnapshot()
	done := make(chan *Result, 1)
	go func() {
		done <- generate(t, append([]string{"conn", "-c", strconv.Itoa(n), "--hold", "20s", "-d", "5m", "-k", "300s"}, tlsArgs...)...)
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for openFDs() < before.fds+n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // connections settle (CONNACK flushed, handshake garbage)
	held := memSnapshot()
	runtime.GC()
	afterGC := memSnapshot()
	f, err := os.Create(filepath.Join(dir, "heap-idle.prof"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	res := <-done
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) / 1024 }
	t.Logf("idle TLS connections: %d (generator held %d)", n, res.Held)
	t.Logf("  RSS                %7.1f KB per connection (before GC %7.1f)", float64(afterGC.rssKB-before.rssKB)/float64(n), float64(held.rssKB-before.rssKB)/float64(n))
	t.Logf("  goroutines         %7.2f per connection", float64(afterGC.goroutines-before.goroutines)/float64(n))
	t.Logf("  stacks (in use)    %7.1f KB per connection", per(afterGC.ms.StackInuse, before.ms.StackInuse))
	t.Logf("  heap (in use)      %7.1f KB per connection (before GC %7.1f)", per(afterGC.ms.HeapInuse, before.ms.HeapInuse), per(held.ms.HeapInuse, before.ms.HeapInuse))
	t.Logf("  heap (live objects)%7.1f KB per connection", per(afterGC.ms.HeapAlloc, before.ms.HeapAlloc))
	t.Logf("  runtime Sys        %7.1f KB per connection", per(afterGC.ms.Sys, before.ms.Sys))
	if res.Broker != nil {
		t.Logf("  generator's view: %.1f KB per connection (VmRSS delta)", res.Broker.PerConnKB)
	}
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

type memSnap struct {
	ms         runtime.MemStats
	rssKB      int64
	goroutines int
	fds        int
}

func memSnapshot() memSnap {
	var s memSnap
	runtime.ReadMemStats(&s.ms)
	s.rssKB = procStatusKB(os.Getpid(), "VmRSS:")
	s.goroutines = runtime.NumGoroutine()
	s.fds = openFDs()
	return s
}

func openFDs() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", os.Getpid()))
	if err != nil {
		return 0
	}
	return len(ents)
}
