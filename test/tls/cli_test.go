package tlstest

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// mosqArgs are the TLS connection flags of mosquitto_pub/mosquitto_sub for
// the broker's listener, trusting the test root, with an optional client
// certificate.
func mosqArgs(port, caFile, certFile, keyFile string) []string {
	a := []string{"-h", "127.0.0.1", "-p", port, "--cafile", caFile}
	if certFile != "" {
		a = append(a, "--cert", certFile, "--key", keyFile)
	}
	return a
}

// mosqPub runs mosquitto_pub and returns its output and error.
func mosqPub(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return run(t, "", "mosquitto_pub", args...)
}

// cliSub is a running mosquitto_sub whose output lines arrive on lines.
type cliSub struct {
	t      testing.TB
	cmd    *exec.Cmd
	lines  chan string
	done   chan struct{}
	err    error // exit status, valid after done
	mu     sync.Mutex
	stderr bytes.Buffer
}

// startSub starts mosquitto_sub with args. mosquitto_sub flushes stdout
// after every message, so each message arrives as soon as it is printed.
func startSub(t testing.TB, args ...string) *cliSub {
	t.Helper()
	bin := requireTool(t, "mosquitto_sub")
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	t.Cleanup(cancel)
	s := &cliSub{t: t, lines: make(chan string, 16), done: make(chan struct{})}
	s.cmd = exec.CommandContext(ctx, bin, args...)
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		s.err = s.cmd.Wait()
		close(s.lines)
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

// next waits for the next output line.
func (s *cliSub) next() string {
	s.t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			<-s.done
			s.t.Fatalf("mosquitto_sub exited (%v) before printing a line; stderr: %s", s.err, s.stderrText())
		}
		return l
	case <-time.After(waitTimeout):
		s.t.Fatalf("mosquitto_sub printed nothing within %v; stderr: %s", waitTimeout, s.stderrText())
		return ""
	}
}

// wait waits for the process to exit and returns its exit error.
func (s *cliSub) wait() error {
	s.t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(waitTimeout):
		s.t.Fatalf("mosquitto_sub did not exit within %v", waitTimeout)
		return nil
	}
}

func (s *cliSub) stderrText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(s.stderr.String())
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
