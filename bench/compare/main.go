// Command compare runs `moat bench` scenarios against mosquitto and moat
// with equivalent configurations on loopback, alternately, for several
// rounds, and prints the medians side by side with the ratio moat/mosquitto,
// the brokers' CPU and resident memory and the generator's own CPU.
//
//	go run ./bench/compare                  # full comparison (about 14 minutes)
//	go run ./bench/compare --quick          # seconds: a smoke run
//	go run ./bench/compare --only conn-full,qos0-1to1 --rounds 5
//
// Both brokers get the same ECDSA P-256 certificate, generated for the
// run, TLS 1.2 and 1.3, anonymous access on the test listener and the same
// PSK file. mosquitto runs with set_tcp_nodelay (its Nagle default adds
// about 40 ms per connect) and raised max_inflight_messages and
// max_queued_messages; moat with the in-memory store, except for the QoS 1
// scenario (its default bolt store and sync policy), and without its per-IP
// connection rate limit (the generator is one source address).
//
// The generator is this program re-executed (MOAT_COMPARE_GEN=1), which
// runs moat/internal/loadgen exactly as `moat bench` does.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"moat/internal/loadgen"
)

const genEnv = "MOAT_COMPARE_GEN"

func main() {
	if os.Getenv(genEnv) == "1" {
		os.Exit(generator(os.Args[1:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// generator is the re-executed load generator.
func generator(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return loadgen.Command(ctx, args, os.Stdout, os.Stderr)
}

type options struct {
	rounds       int
	duration     time.Duration
	connDuration time.Duration
	idle         []int
	hold         time.Duration
	drain        time.Duration
	concurrency  int
	only         map[string]bool
	moatBin      string
	mosqBin      string
	jsonOut      string
	keep         bool
	maxTime      time.Duration
	verify       bool
	quick        bool
	stdout       io.Writer
	stderr       io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	o := options{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every scenario against both brokers, in alternating order")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measurement window of the message scenarios")
	fs.DurationVar(&o.connDuration, "conn-duration", 5*time.Second, "measurement window of the handshake scenarios")
	idle := fs.String("idle", "10000,19000", "idle TLS connection counts for the memory scenario, comma separated (at most about 19,900 with 20,000 open files)")
	// The steady state of an idle fleet: long enough for moat's memory
	// trim (memory_trim_interval, 10 s) to find the broker quiet.
	fs.DurationVar(&o.hold, "hold", 30*time.Second, "how long idle connections are held before memory is read")
	fs.IntVar(&o.concurrency, "concurrency", 64, "connection attempts in flight in the handshake scenarios (enough to keep a multi-core broker busy)")
	only := fs.String("only", "", "comma separated scenario names to run (default all): "+strings.Join(scenarioNames(), ","))
	fs.StringVar(&o.moatBin, "moat", "", "moat binary (default: go build ./cmd/moat)")
	fs.StringVar(&o.mosqBin, "mosquitto", "", "mosquitto binary (default: from PATH or /usr/sbin)")
	fs.StringVar(&o.jsonOut, "json", "", "also write every run's result to this JSON file")
	fs.BoolVar(&o.keep, "keep", false, "keep the run directory (configurations, logs)")
	fs.DurationVar(&o.maxTime, "max-time", 15*time.Minute, "stop starting runs after this long")
	fs.BoolVar(&o.verify, "verify", false, "the generator verifies the broker certificate chain (costs generator CPU; the broker's work is the same)")
	fs.BoolVar(&o.quick, "quick", false, "a run of seconds: 1 round, 1 s windows, 300 idle connections")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.drain = 5 * time.Second
	if o.quick {
		o.rounds, o.duration, o.connDuration, o.hold, o.drain = 1, time.Second, time.Second, time.Second, time.Second
		*idle = "300"
	}
	for f := range strings.SplitSeq(*idle, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "compare: --idle %q: not a list of counts\n", *idle)
			return 2
		}
		o.idle = append(o.idle, n)
	}
	if *only != "" {
		o.only = map[string]bool{}
		for n := range strings.SplitSeq(*only, ",") {
			o.only[strings.TrimSpace(n)] = true
		}
	}
	if o.rounds < 1 || o.rounds > 20 {
		fmt.Fprintln(stderr, "compare: --rounds between 1 and 20")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := compare(ctx, &o); err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		return 1
	}
	return 0
}

// scenario is one comparison.
type scenario struct {
	name    string
	title   string
	unit    string
	target  string  // the target, for the table
	goal    float64 // ratio moat/mosquitto to reach (0: none)
	lower   bool    // lower is better (memory): goal is a maximum
	durable bool
	idle    int
	latency bool // report p99 latency too
	args    func(o *options, b *broker, m *material) []string
	value   func(r *loadgen.Result) float64
}

func tlsArgs(o *options, b *broker, m *material) []string {
	a := []string{"--transport", "tls", "-p", strconv.Itoa(b.tlsPort), "--curves", "x25519"}
	if o.verify {
		return append(a, "--cafile", m.caFile)
	}
	return append(a, "--insecure")
}

func connRate(r *loadgen.Result) float64 { return r.Connect.Rate }

func scenarios(o *options) []scenario {
	connArgs := func(extra ...string) func(o *options, b *broker, m *material) []string {
		return func(o *options, b *broker, m *material) []string {
			a := append([]string{"conn"}, tlsArgs(o, b, m)...)
			a = append(a, "-c", "10000000", "--concurrency", strconv.Itoa(o.concurrency), "-d", o.connDuration.String())
			return append(a, extra...)
		}
	}
	msgArgs := func(extra ...string) func(o *options, b *broker, m *material) []string {
		return func(o *options, b *broker, m *material) []string {
			a := append([]string{"pubsub"}, tlsArgs(o, b, m)...)
			a = append(a, "-s", "64", "-d", o.duration.String(), "--drain", o.drain.String())
			return append(a, extra...)
		}
	}
	recvRate := func(r *loadgen.Result) float64 { return r.ReceiveRate }
	list := []scenario{
		{name: "conn-full", title: "TLS 1.3 full handshake + CONNECT", unit: "conn/s", target: ">= 1.5x", goal: 1.5,
			args: connArgs("--tls-version", "1.3"), value: connRate},
		{name: "conn-resumed", title: "TLS 1.3 resumed handshake + CONNECT", unit: "conn/s", target: ">= 1.5x", goal: 1.5,
			args: connArgs("--tls-version", "1.3", "--resume"), value: connRate},
		{name: "qos0-1to1", title: "QoS 0 TLS 64 B 1->1", unit: "msg/s", target: ">= 1.5x", goal: 1.5, latency: true,
			args: msgArgs("--pubs", "1", "--subs", "1", "-t", "bench/%i"), value: recvRate},
		{name: "qos0-100to1", title: "QoS 0 TLS 64 B 100->1", unit: "msg/s", target: ">= 1.5x", goal: 1.5, latency: true,
			args: msgArgs("--pubs", "100", "--subs", "1", "-t", "bench/%i", "--sub-topic", "bench/+"), value: recvRate},
		{name: "qos0-1to100", title: "QoS 0 TLS 64 B 1->100", unit: "deliveries/s", target: ">= 2.5x", goal: 2.5, latency: true,
			args: msgArgs("--pubs", "1", "--subs", "100", "-t", "bench/all"), value: recvRate},
		{name: "qos0-latency", title: "QoS 0 TLS 64 B 1->1 at 10k msg/s", unit: "msg/s", latency: true,
			args: msgArgs("--pubs", "1", "--subs", "1", "-t", "bench/%i", "--rate", "10000"), value: recvRate},
		// Sessions that outlive the connection: what a durable store is for
		// (with clean sessions moat keeps QoS 1 messages in memory only).
		{name: "qos1-1to1", title: "QoS 1 TLS 64 B 1->1, persistent sessions", unit: "msg/s", target: ">= 1x", goal: 1, latency: true, durable: true,
			args: msgArgs("-q", "1", "--inflight", "256", "--session-expiry", "300s", "--pubs", "1", "--subs", "1", "-t", "bench/%i"), value: recvRate},
	}
	for _, n := range o.idle {
		list = append(list, scenario{
			name: "idle-" + strconv.Itoa(n), title: fmt.Sprintf("idle TLS connections, %d", n), unit: "KB/conn",
			target: "<= 1.5x", goal: 1.5, lower: true, idle: n,
			args: func(o *options, b *broker, m *material) []string {
				a := append([]string{"conn"}, tlsArgs(o, b, m)...)
				return append(a, "-c", strconv.Itoa(n), "--concurrency", strconv.Itoa(o.concurrency),
					"--hold", o.hold.String(), "-d", "5m", "-k", "300s")
			},
			value: func(r *loadgen.Result) float64 {
				if r.Broker == nil || r.Held == 0 {
					return math.NaN()
				}
				return r.Broker.PerConnKB
			},
		})
	}
	list = append(list, scenario{
		name: "psk", title: "TLS-PSK 1.2 handshake + CONNECT", unit: "conn/s", target: ">= 1x", goal: 1,
		args: func(o *options, b *broker, m *material) []string {
			return []string{"conn", "--transport", "tls-psk", "-p", strconv.Itoa(b.pskPort), "--tls-version", "1.2",
				"--psk", m.pskHex, "--psk-identity", m.pskID,
				"-c", "10000000", "--concurrency", strconv.Itoa(o.concurrency), "-d", o.connDuration.String()}
		},
		value: connRate,
	})
	if o.only == nil {
		return list
	}
	var out []scenario
	for _, s := range list {
		if o.only[s.name] || (s.idle > 0 && o.only["idle"]) {
			out = append(out, s)
		}
	}
	return out
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios(&options{idle: []int{10000}}) {
		names = append(names, s.name)
	}
	return names
}

// sample is one run's figures.
type sample struct {
	Scenario string          `json:"scenario"`
	Broker   string          `json:"broker"`
	Round    int             `json:"round"`
	Value    float64         `json:"value"`
	Err      string          `json:"error,omitempty"`
	Result   *loadgen.Result `json:"result,omitempty"`
	GenCPU   float64         `json:"generator_cpu_cores"`
}

// MarshalJSON writes a missing value (NaN) as null.
func (s sample) MarshalJSON() ([]byte, error) {
	type plain sample
	v := struct {
		plain
		Value *float64 `json:"value"`
	}{plain: plain(s)}
	if !math.IsNaN(s.Value) {
		v.Value = &s.Value
	}
	return json.Marshal(v)
}

func (s *sample) p99() float64 {
	if s.Result == nil || s.Result.Latency == nil {
		return math.NaN()
	}
	return s.Result.Latency.P99
}

func compare(ctx context.Context, o *options) error {
	start := time.Now()
	root, err := moduleRoot()
	if err != nil && o.moatBin == "" {
		return err
	}
	dir, err := os.MkdirTemp("", "moat-compare-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(o.stderr, "run directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.mosqBin == "" {
		if o.mosqBin, err = exec.LookPath("mosquitto"); err != nil {
			o.mosqBin = "/usr/sbin/mosquitto"
		}
	}
	if _, err := os.Stat(o.mosqBin); err != nil {
		return fmt.Errorf("mosquitto not found (apt-get install mosquitto, or --mosquitto PATH): %w", err)
	}
	if o.moatBin == "" {
		o.moatBin = filepath.Join(dir, "moat")
		fmt.Fprintln(o.stderr, "building moat ...")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.moatBin, "./cmd/moat")
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = o.stderr, o.stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/moat: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	m, err := newMaterial(dir)
	if err != nil {
		return err
	}
	list := scenarios(o)
	if len(list) == 0 {
		return errors.New("no scenario selected")
	}
	load0 := loadAvg()
	var samples []sample
	stopped := ""
rounds:
	for round := range o.rounds {
		for si, sc := range list {
			order := []string{"mosquitto", "moat"}
			if (round+si)%2 == 1 {
				order = []string{"moat", "mosquitto"}
			}
			for _, name := range order {
				if ctx.Err() != nil {
					stopped = "interrupted"
					break rounds
				}
				if time.Since(start) > o.maxTime {
					stopped = fmt.Sprintf("--max-time %s reached", o.maxTime)
					break rounds
				}
				runDir := filepath.Join(dir, fmt.Sprintf("r%d-%s-%s", round, sc.name, name))
				if err := os.MkdirAll(runDir, 0o700); err != nil {
					return err
				}
				s := runOne(ctx, o, self, m, runDir, sc, name)
				s.Round = round
				samples = append(samples, s)
				status := fmt.Sprintf("%.4g %s", s.Value, sc.unit)
				if s.Err != "" {
					status = "error: " + s.Err
				}
				fmt.Fprintf(o.stderr, "[%s] round %d/%d  %-14s %-10s %s\n", time.Since(start).Round(time.Second), round+1, o.rounds, sc.name, name, status)
			}
		}
	}
	report(o, list, samples, time.Since(start), stopped, load0+" at the start, "+loadAvg()+" at the end")
	if o.jsonOut != "" {
		f, err := os.Create(o.jsonOut)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(f)
		enc.SetIndent("", "  ")
		if err := enc.Encode(samples); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// runOne starts a fresh broker, runs the generator against it and stops it.
func runOne(ctx context.Context, o *options, self string, m *material, runDir string, sc scenario, name string) sample {
	s := sample{Scenario: sc.name, Broker: name, Value: math.NaN()}
	var b *broker
	var err error
	if name == "mosquitto" {
		b, err = startMosquitto(ctx, o.mosqBin, m, runDir)
	} else {
		b, err = startMoat(ctx, o.moatBin, m, runDir, brokerSpec{durable: sc.durable})
	}
	if err != nil {
		s.Err = err.Error()
		return s
	}
	defer b.stop()
	if !o.quick {
		time.Sleep(300 * time.Millisecond) // let start-up work settle
	}
	args := append(sc.args(o, b, m), "--json", "--quiet", "--broker-pid", strconv.Itoa(b.pid()))
	limit := 2*o.duration + 2*o.connDuration + o.hold + 3*time.Minute
	gctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(gctx, self, args...)
	cmd.Env = append(os.Environ(), genEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var res loadgen.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		if err == nil {
			err = jerr
		}
		s.Err = fmt.Sprintf("generator: %v: %s", err, strings.TrimSpace(stderr.String()))
		return s
	}
	s.Result = &res
	if err != nil {
		s.Err = fmt.Sprintf("generator: %v: %s", err, strings.TrimSpace(stderr.String()))
		for k, ex := range res.ErrorExamples {
			s.Err += fmt.Sprintf(" [%d x %s]", res.Errors[k], ex)
		}
	}
	s.Value = sc.value(&res)
	if res.Generator != nil {
		s.GenCPU = res.Generator.CPUCores
	}
	select {
	case err := <-b.exited:
		b.exited <- err
		s.Err = fmt.Sprintf("%s exited during the run (%v): %s", name, err, tail(b.logFile))
	default:
	}
	return s
}

func median(v []float64) float64 {
	var xs []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// stat is the median of f over the samples of one scenario and broker.
func stat(samples []sample, sc, broker string, f func(*sample) float64) float64 {
	var v []float64
	for i := range samples {
		if samples[i].Scenario == sc && samples[i].Broker == broker {
			v = append(v, f(&samples[i]))
		}
	}
	return median(v)
}

func fmtVal(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1000:
		return commas(int64(v + 0.5))
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func ratio(moat, mosq float64) float64 {
	if math.IsNaN(moat) || math.IsNaN(mosq) || mosq == 0 {
		return math.NaN()
	}
	return moat / mosq
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

func report(o *options, list []scenario, samples []sample, took time.Duration, stopped, load string) {
	w := o.stdout
	fmt.Fprintf(w, "\nmoat vs %s — medians of %d round(s), brokers alternating, fresh broker per run; took %s\n",
		mosquittoVersion(o.mosqBin), o.rounds, took.Round(time.Second))
	fmt.Fprintf(w, "machine: %s, %d CPUs, %s/%s, %s; generator and broker share the machine\n",
		cpuModel(), runtime.NumCPU(), runtime.GOOS, kernel(), runtime.Version())
	verify := "--insecure (no chain verification; the broker's work is the same)"
	if o.verify {
		verify = "--cafile (chain verified)"
	}
	fmt.Fprintf(w, "TLS: ECDSA P-256 server certificate, X25519 key exchange, client %s\n", verify)
	fmt.Fprintf(w, "load average (1 min): %s\n", load)
	if stopped != "" {
		fmt.Fprintf(w, "STOPPED EARLY: %s\n", stopped)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tunit\tmosquitto\tmoat\tmoat/mosq\ttarget\t\t")
	for _, sc := range list {
		val := func(s *sample) float64 { return s.Value }
		mq, mt := stat(samples, sc.name, "mosquitto", val), stat(samples, sc.name, "moat", val)
		r := ratio(mt, mq)
		verdict := ""
		if sc.goal > 0 && !math.IsNaN(r) {
			ok := r >= sc.goal
			if sc.lower {
				ok = r <= sc.goal
			}
			verdict = "met"
			if !ok {
				verdict = "MISSED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", sc.title, sc.unit, fmtVal(mq), fmtVal(mt), fmtRatio(r), sc.target, verdict)
		if sc.latency {
			p99 := func(s *sample) float64 { return s.p99() }
			lq, lt := stat(samples, sc.name, "mosquitto", p99), stat(samples, sc.name, "moat", p99)
			lr := ratio(lt, lq)
			target, verdict := "", ""
			if sc.goal > 0 && strings.HasPrefix(sc.name, "qos0") {
				target, verdict = "<= 1x", "met"
				if !math.IsNaN(lr) && lr > 1 {
					verdict = "MISSED"
				}
				if math.IsNaN(lr) {
					verdict = ""
				}
			}
			fmt.Fprintf(tw, "  p99 latency\tms\t%s\t%s\t%s\t%s\t%s\t\n", fmtVal(lq), fmtVal(lt), fmtRatio(lr), target, verdict)
		}
	}
	tw.Flush()

	fmt.Fprintln(w, "\nresources during the measurement window (medians): broker CPU in cores (of", runtime.NumCPU(), "), broker RSS at the end of the window, generator CPU")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmosq CPU\tmoat CPU\tmosq RSS MB\tmoat RSS MB\tgen CPU (mosq)\tgen CPU (moat)\tmosq per core\tmoat per core\t")
	for _, sc := range list {
		cpu := func(s *sample) float64 {
			if s.Result == nil || s.Result.Broker == nil {
				return math.NaN()
			}
			return s.Result.Broker.CPUCores
		}
		rss := func(s *sample) float64 {
			if s.Result == nil || s.Result.Broker == nil {
				return math.NaN()
			}
			if s.Result.Broker.RSSHeldKB > 0 {
				return float64(s.Result.Broker.RSSHeldKB) / 1024
			}
			return float64(s.Result.Broker.RSSKB) / 1024
		}
		gen := func(s *sample) float64 {
			if s.Result == nil || s.Result.Generator == nil {
				return math.NaN()
			}
			return s.Result.Generator.CPUCores
		}
		perCore := func(s *sample) float64 {
			c := cpu(s)
			if sc.idle > 0 || math.IsNaN(c) || c == 0 {
				return math.NaN()
			}
			return s.Value / c
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", sc.name,
			fmtVal(stat(samples, sc.name, "mosquitto", cpu)), fmtVal(stat(samples, sc.name, "moat", cpu)),
			fmtVal(stat(samples, sc.name, "mosquitto", rss)), fmtVal(stat(samples, sc.name, "moat", rss)),
			fmtVal(stat(samples, sc.name, "mosquitto", gen)), fmtVal(stat(samples, sc.name, "moat", gen)),
			fmtVal(stat(samples, sc.name, "mosquitto", perCore)), fmtVal(stat(samples, sc.name, "moat", perCore)))
	}
	tw.Flush()

	// Details worth knowing: negotiated TLS, resumption, losses, errors.
	fmt.Fprintln(w)
	for _, sc := range list {
		for _, name := range []string{"mosquitto", "moat"} {
			var notes []string
			for i := range samples {
				s := &samples[i]
				if s.Scenario != sc.name || s.Broker != name {
					continue
				}
				if s.Err != "" {
					notes = append(notes, fmt.Sprintf("round %d: %s", s.Round+1, s.Err))
				}
				if r := s.Result; r != nil {
					if s.Round == 0 && r.Connect.TLSVersion != "" {
						n := r.Connect.TLSVersion + " " + r.Connect.CipherSuite
						if r.Connect.Resumed > 0 {
							n += fmt.Sprintf(", %d of %d resumed", r.Connect.Resumed, r.Connect.OK)
						}
						notes = append(notes, n)
					}
					if r.Expected > 0 && r.Received < r.Expected {
						notes = append(notes, fmt.Sprintf("round %d: %d of %d deliveries (%.2f%% dropped or still queued after the drain)", s.Round+1, r.Received, r.Expected, 100*float64(r.Expected-r.Received)/float64(r.Expected)))
					}
					if r.Connect.Failed > 0 {
						notes = append(notes, fmt.Sprintf("round %d: %d connections failed %v", s.Round+1, r.Connect.Failed, r.Errors))
					}
					if r.ConnectionsLost > 0 {
						notes = append(notes, fmt.Sprintf("round %d: %d connections lost %v", s.Round+1, r.ConnectionsLost, r.Errors))
					}
					for _, wn := range r.Warnings {
						notes = append(notes, fmt.Sprintf("round %d: %s", s.Round+1, wn))
					}
				}
			}
			if len(notes) > 0 {
				fmt.Fprintf(w, "%s / %s: %s\n", sc.name, name, strings.Join(dedup(notes), "; "))
			}
		}
	}
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// moduleRoot finds the directory of moat's go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module moat") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find moat's go.mod above the working directory: run from the repository or pass --moat")
		}
		dir = parent
	}
}
