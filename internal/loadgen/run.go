package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/topic"
)

// runner holds the state of one run.
type runner struct {
	cfg      *Config
	d        *dialer
	base     time.Time // monotonic origin of ack latencies
	progress io.Writer

	stopping atomic.Bool   // the window is over: publishers stop
	stopCh   chan struct{} // closed with stopping

	connOK, connFail, connResumed atomic.Int64
	serverKeepAlive               atomic.Int64 // smallest MQTT 5 Server Keep Alive seen (ns); 0 none

	// mu guards the following fields.
	mu       sync.Mutex
	errs     map[string]int64
	examples map[string]string // label -> the first full error
	first    *connInfo
	connHist Histogram
	warnings []string
}

func (r *runner) mono() time.Duration { return time.Since(r.base) }

// noteServerKeepAlive records a broker's MQTT 5 Server Keep Alive, which
// replaces the one the client asked for.
func (r *runner) noteServerKeepAlive(d time.Duration) {
	for {
		old := r.serverKeepAlive.Load()
		if old != 0 && int64(d) >= old {
			return
		}
		if r.serverKeepAlive.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (r *runner) stop() {
	if r.stopping.CompareAndSwap(false, true) {
		close(r.stopCh)
	}
}

func (r *runner) warn(format string, args ...any) {
	r.mu.Lock()
	r.warnings = append(r.warnings, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *runner) countErr(err error) {
	label := classify(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.errs[label]; !ok && len(r.errs) >= 16 {
		label = "other errors"
	}
	r.errs[label]++
	if _, ok := r.examples[label]; !ok {
		r.examples[label] = err.Error()
	}
}

func (r *runner) progressf(format string, args ...any) {
	if r.progress != nil {
		fmt.Fprintf(r.progress, format, args...)
	}
}

// Run runs one scenario and returns its result. Progress lines go to
// progress (nil: none) once a second. Canceling ctx ends the measurement
// window early; the result covers what was measured. Run always returns
// within the configured duration, hold and drain plus bounded set-up and
// tear-down times.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: &cfg, base: time.Now(), progress: progress, stopCh: make(chan struct{}), errs: map[string]int64{}, examples: map[string]string{}}
	ips, err := resolveTarget(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	if err := r.checkFiles(); err != nil {
		return nil, err
	}
	target := cfg.addr()
	nsrc := 1
	if v4 := firstV4(ips); v4 != nil && v4.IsLoopback() {
		nsrc = sourcePlan(cfg.openConns(), ephemeralPorts(), cfg.SourceIPs)
		if nsrc > 1 {
			target = net.JoinHostPort(v4.String(), strconv.Itoa(cfg.Port))
		}
	} else if cfg.openConns() > ephemeralPorts()*9/10 {
		r.warn("%d connections from one source address may run out of ephemeral ports (%d); target an IPv4 loopback address to spread sources", cfg.openConns(), ephemeralPorts())
	}
	var sources []net.IP
	if nsrc > 1 {
		for i := range nsrc {
			sources = append(sources, net.IPv4(127, 0, 0, byte(1+i)))
		}
	}
	life, cancelLife := context.WithCancel(context.Background())
	defer cancelLife()
	d, err := newDialer(life, &cfg, target, sources)
	if err != nil {
		return nil, err
	}
	r.d = d
	res := &Result{
		Scenario: cfg.Scenario, Transport: cfg.Transport, TLSClient: d.tlsClientName(), Target: cfg.addr(), MQTTVersion: int(cfg.Version),
		QoS: int(cfg.QoS), PayloadSize: cfg.PayloadSize, Rate: cfg.Rate, SourceIPs: nsrc, Start: time.Now(),
	}
	if cfg.Scenario == ScenarioConn {
		err = r.runConn(ctx, res)
	} else {
		err = r.runMessages(ctx, res)
	}
	r.finish(res)
	return res, err
}

func firstV4(ips []net.IP) net.IP {
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			return v4
		}
	}
	return nil
}

// checkFiles refuses a run that needs more open files than RLIMIT_NOFILE
// and warns when the broker's own limit is below the connection count.
func (r *runner) checkFiles() error {
	need := r.cfg.openConns()
	soft, hard, ok := fileLimit()
	const reserve = 64 // stdio, the resolver, the runtime's poller...
	if ok && uint64(need+reserve) > soft {
		return fmt.Errorf("%w: %d simultaneous connections need about %d open files, but RLIMIT_NOFILE is %d (hard limit %d): at most %d connections from this process; raise the limit (ulimit -n, systemd LimitNOFILE) or lower -c",
			ErrFileLimit, need, need+reserve, soft, hard, max(0, int(soft)-reserve))
	}
	if r.cfg.BrokerPID > 0 {
		if bl := procFileLimit(r.cfg.BrokerPID); bl > 0 && uint64(need) > bl {
			r.warn("the broker (pid %d) may open at most %d files: %d connections exceed its RLIMIT_NOFILE and some will be refused", r.cfg.BrokerPID, bl, need)
		}
	}
	return nil
}

// connectOne opens client i and records the connect latency and errors.
func (r *runner) connectOne(ctx context.Context, c *client, h *Histogram) bool {
	t0 := time.Now()
	err := c.open(ctx)
	if err != nil {
		if ended(ctx) { // the window ended or the run was canceled
			return false
		}
		r.connFail.Add(1)
		r.countErr(err)
		return false
	}
	h.Record(int64(time.Since(t0)))
	r.connOK.Add(1)
	if c.info.Resumed {
		r.connResumed.Add(1)
	}
	if c.info.TLSVersion != 0 {
		r.mu.Lock()
		if r.first == nil {
			info := c.info
			r.first = &info
		}
		r.mu.Unlock()
	}
	return true
}

// ended reports whether ctx is done or past its deadline (a connection's
// deadline, set from ctx's, may fire before ctx's own timer does).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// parallel runs fn(i) for i in [0, n) on Concurrency workers, each with
// its own latency histogram, until n, ctx or stop. It returns how many
// indexes were started.
func (r *runner) parallel(ctx context.Context, n int, fn func(i int, h *Histogram)) int {
	var next atomic.Int64
	workers := min(r.cfg.Concurrency, n)
	hs := make([]Histogram, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ended(ctx) || r.stopping.Load() {
					return
				}
				fn(i, &hs[w])
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	for i := range hs {
		r.connHist.Merge(&hs[i])
	}
	r.mu.Unlock()
	return min(int(next.Load()), n)
}

// ticker calls fn every second until the returned stop function is
// called.
func ticker(fn func(elapsed time.Duration)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(time.Since(start))
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// pinger keeps clients alive with PINGREQ every keep alive / 2.
func (r *runner) pinger(clients func() []*client) (stop func()) {
	ka := r.cfg.KeepAlive
	if ska := time.Duration(r.serverKeepAlive.Load()); ska > 0 {
		ka = ska
	}
	if ka <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ka / 2)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, c := range clients() {
					c.ping()
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// closeAll disconnects clients on a few workers.
func closeAll(clients []*client) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(64, len(clients)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(clients) {
					return
				}
				if c := clients[i]; c != nil {
					c.close()
				}
			}
		}()
	}
	wg.Wait()
}

// runConn measures the connection rate; with Hold it keeps the
// connections open and idle and measures the broker's memory.
func (r *runner) runConn(ctx context.Context, res *Result) error {
	cfg := r.cfg
	res.Clients = cfg.Clients
	bp := r.brokerProbe()
	gcpu := selfCPU()
	wctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var held []*client
	if cfg.Hold > 0 {
		held = make([]*client, cfg.Clients)
	}
	var open atomic.Int64
	stopTick := ticker(func(el time.Duration) {
		r.progressf("%5.0fs  connected %d  failed %d  open %d\n", el.Seconds(), r.connOK.Load(), r.connFail.Load(), open.Load())
	})
	start := time.Now()
	r.parallel(wctx, cfg.Clients, func(i int, h *Histogram) {
		c := newClient(r, i, roleConn, cfg.ClientPrefix+"c"+strconv.Itoa(i))
		if !r.connectOne(wctx, c, h) {
			return
		}
		if cfg.Hold > 0 {
			c.idle()
			held[i] = c
			open.Add(1)
			return
		}
		c.close()
	})
	window := time.Since(start)
	stopTick()
	res.Window = window.Seconds()
	res.Broker = bp.end(window)
	res.Generator = genStats(gcpu, window)
	if cfg.Hold > 0 && ctx.Err() == nil && wctx.Err() != nil && int(r.connOK.Load()+r.connFail.Load()) < cfg.Clients {
		r.warn("the duration (%s) ended the connect phase after %d of %d connections", cfg.Duration, r.connOK.Load()+r.connFail.Load(), cfg.Clients)
	}
	var alive []*client
	for _, c := range held {
		if c != nil {
			alive = append(alive, c)
		}
	}
	if cfg.Hold > 0 && len(alive) > 0 && ctx.Err() == nil {
		r.progressf("holding %d idle connections for %s\n", len(alive), cfg.Hold)
		stopPing := r.pinger(func() []*client { return alive })
		select {
		case <-time.After(cfg.Hold):
		case <-ctx.Done():
		}
		stopPing()
		res.Held = len(alive)
		res.HoldSeconds = cfg.Hold.Seconds()
		if res.Broker != nil {
			if s := readProc(cfg.BrokerPID); s.ok {
				res.Broker.RSSHeldKB = s.rssKB
				if res.Broker.RSSBeforeKB > 0 {
					res.Broker.PerConnKB = float64(s.rssKB-res.Broker.RSSBeforeKB) / float64(len(alive))
				}
			}
		}
		res.Generator.RSSKB = procStatusKB(selfPID(), "VmRSS:")
	}
	closeAll(alive)
	if r.connOK.Load() == 0 {
		return ErrNoConnections
	}
	return nil
}

// runMessages runs pub, sub and pubsub.
func (r *runner) runMessages(ctx context.Context, res *Result) error {
	cfg := r.cfg
	nPub, nSub := 0, 0
	switch cfg.Scenario {
	case ScenarioPub:
		nPub = cfg.Clients
	case ScenarioSub:
		nSub = cfg.Clients
	case ScenarioPubSub:
		nPub, nSub = cfg.Pubs, cfg.Subs
	}
	res.Publishers, res.Subscribers = nPub, nSub
	res.Topic = cfg.Topic
	if nSub > 0 {
		res.SubTopic = cfg.SubTopic
	}
	setup, cancelSetup := context.WithTimeout(ctx, maxSetupTime)
	defer cancelSetup()

	var setupDone atomic.Int64
	stopTick := ticker(func(el time.Duration) {
		r.progressf("%5.0fs  connecting: %d of %d ready, %d failed\n", el.Seconds(), setupDone.Load(), nPub+nSub, r.connFail.Load())
	})
	subs := make([]*client, nSub)
	r.parallel(setup, nSub, func(i int, h *Histogram) {
		id := cfg.ClientPrefix + "s" + strconv.Itoa(i)
		c := newClient(r, i, roleSub, id)
		if !r.connectOne(setup, c, h) {
			return
		}
		if err := c.subscribe(expandTopic(cfg.SubTopic, i, id)); err != nil {
			r.countErr(err)
			r.connFail.Add(1)
			c.close()
			return
		}
		c.startReader()
		subs[i] = c
		setupDone.Add(1)
	})
	pubs := make([]*client, nPub)
	r.parallel(setup, nPub, func(i int, h *Histogram) {
		id := cfg.ClientPrefix + "p" + strconv.Itoa(i)
		c := newClient(r, i, rolePub, id)
		if !r.connectOne(setup, c, h) {
			return
		}
		if err := c.preparePublish(expandTopic(cfg.Topic, i, id), cfg.PayloadSize); err != nil {
			r.countErr(err)
			c.close()
			return
		}
		c.startReader()
		pubs[i] = c
		setupDone.Add(1)
	})
	stopTick()
	subs, pubs = compact(subs), compact(pubs)
	all := append(append([]*client(nil), subs...), pubs...)
	defer func() {
		closeAll(all)
		for _, c := range all {
			<-c.done
		}
	}()
	if len(subs) < nSub || len(pubs) < nPub {
		r.warn("only %d of %d subscribers and %d of %d publishers connected", len(subs), nSub, len(pubs), nPub)
	}
	if (nSub > 0 && len(subs) == 0) || (nPub > 0 && len(pubs) == 0) {
		return ErrNoConnections
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Quotas: -n split over the publishers.
	if cfg.Count > 0 && len(pubs) > 0 {
		per, extra := cfg.Count/int64(len(pubs)), cfg.Count%int64(len(pubs))
		for i, c := range pubs {
			c.quota = per
			if int64(i) < extra {
				c.quota++
			}
		}
	}
	fanout := expectedFanout(pubs, subs, cfg)

	// The measurement window.
	bp := r.brokerProbe()
	gcpu := selfCPU()
	stopPing := r.pinger(func() []*client { return all })
	defer stopPing()
	var pubWG sync.WaitGroup
	var pubErrs atomic.Int64
	start := time.Now()
	for _, c := range pubs {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			if err := c.publishLoop(); err != nil && !r.stopping.Load() {
				pubErrs.Add(1)
				r.countErr(err)
			}
		}()
	}
	pubsDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubsDone) }()

	var lastSent, lastRecv, lastAcked int64
	stopTick = ticker(func(el time.Duration) {
		s, rc, a := sum(pubs, sentOf), sum(subs, recvOf), sum(pubs, ackedOf)
		line := fmt.Sprintf("%5.0fs", el.Seconds())
		if len(pubs) > 0 {
			line += fmt.Sprintf("  published %s/s", commas(s-lastSent))
			if cfg.QoS > 0 {
				line += fmt.Sprintf("  acked %s/s", commas(a-lastAcked))
			}
		}
		if len(subs) > 0 {
			line += fmt.Sprintf("  received %s/s", commas(rc-lastRecv))
		}
		lastSent, lastRecv, lastAcked = s, rc, a
		r.progressf("%s  total %s / %s\n", line, commas(s), commas(rc))
	})
	// expected is the number of deliveries the publishes so far should
	// make (-1 when unknown).
	expected := func() int64 {
		if fanout == nil {
			return -1
		}
		var n int64
		for i, c := range pubs {
			n += c.sent.Load() * fanout[i]
		}
		return n
	}
	// complete: every publish acknowledged and delivered.
	complete := func() bool {
		okAck := cfg.QoS == 0 || sum(pubs, ackedOf) >= sum(pubs, sentOf)
		e := expected()
		okRecv := len(subs) == 0 || (e >= 0 && sum(subs, recvOf) >= e)
		return okAck && okRecv
	}
	// The window ends with the duration, or once the publishers have
	// published their -n and it has all arrived (or stopped arriving),
	// or, for sub, once -n messages were received.
	deadline := time.NewTimer(cfg.Duration)
	defer deadline.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	var pubsEnded time.Time
	var lastProgress int64 = -1
	var lastChange time.Time
wait:
	for {
		select {
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		case now := <-poll.C:
			if cfg.Scenario == ScenarioSub {
				if (cfg.Count > 0 && sum(subs, recvOf) >= cfg.Count) || allDone(subs) {
					break wait
				}
				continue
			}
			select {
			case <-pubsDone:
			default:
				continue
			}
			if pubsEnded.IsZero() {
				pubsEnded = now
			}
			if complete() {
				break wait
			}
			// Nothing more arriving for a while: the rest is lost.
			if p := sum(subs, recvOf) + sum(pubs, ackedOf); p != lastProgress {
				lastProgress, lastChange = p, now
			} else if now.Sub(lastChange) > time.Second || now.Sub(pubsEnded) > cfg.Drain {
				break wait
			}
		}
	}
	r.stop()
	// A publisher blocked in a write (the broker stopped reading it) would
	// hold the window open: end its write now. Its connection cannot
	// write any more, which does not matter at this point.
	select {
	case <-pubsDone:
	case <-time.After(100 * time.Millisecond):
		now := time.Now()
		for _, c := range pubs {
			c.cut.Store(true)
			_ = c.conn.SetWriteDeadline(now)
		}
		<-pubsDone
	}
	window := time.Since(start)
	recvInWindow := sum(subs, recvOf)
	stopTick()
	res.Window = window.Seconds()
	res.Broker = bp.end(window)
	res.Generator = genStats(gcpu, window)
	res.Published = sum(pubs, sentOf)
	res.Expected = max(expected(), 0)

	// Drain: deliveries and acknowledgements still in flight count in the
	// totals (and the loss), not in the rates.
	if len(pubs) > 0 {
		drainEnd := time.Now().Add(cfg.Drain)
		for time.Now().Before(drainEnd) && ctx.Err() == nil && !complete() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	res.Received = sum(subs, recvOf)
	res.Acked = sum(pubs, ackedOf)
	closeAll(all)
	var lat, ackLat Histogram
	for _, c := range all {
		<-c.done
		lat.Merge(c.lat)
		ackLat.Merge(c.ackLat)
		if err := c.readErr(); err != nil {
			res.ConnectionsLost++
			r.countErr(err)
		}
	}
	if window > 0 {
		res.PublishRate = float64(res.Published) / window.Seconds()
		res.AckRate = float64(res.Acked) / window.Seconds()
		res.ReceiveRate = float64(recvInWindow) / window.Seconds()
	}
	if lat.Count() > 0 {
		res.Latency = latencyStats(&lat)
	} else if len(subs) > 0 && res.Received > 0 && cfg.Scenario != ScenarioSub && cfg.PayloadSize < TimestampSize {
		r.warn("payloads under %d bytes carry no timestamp: no latency", TimestampSize)
	}
	if ackLat.Count() > 0 {
		res.AckLatency = latencyStats(&ackLat)
	}
	return nil
}

func compact(cs []*client) []*client {
	out := cs[:0]
	for _, c := range cs {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

func sentOf(c *client) int64  { return c.sent.Load() }
func recvOf(c *client) int64  { return c.recv.Load() }
func ackedOf(c *client) int64 { return c.acked.Load() }

func sum(cs []*client, f func(*client) int64) int64 {
	var n int64
	for _, c := range cs {
		n += f(c)
	}
	return n
}

func allDone(cs []*client) bool {
	for _, c := range cs {
		select {
		case <-c.done:
		default:
			return false
		}
	}
	return true
}

// expectedFanout counts, per publisher, the subscribers whose filter
// matches its topic (nil when there are too many pairs to check).
func expectedFanout(pubs, subs []*client, cfg *Config) []int64 {
	if len(subs) == 0 || len(pubs)*len(subs) > 4_000_000 {
		return nil
	}
	filters := make([]string, len(subs))
	for i, s := range subs {
		filters[i] = expandTopic(cfg.SubTopic, s.idx, s.id)
	}
	// Many publishers usually share few distinct filters.
	sort.Strings(filters)
	f := make([]int64, len(pubs))
	for i, p := range pubs {
		for _, flt := range filters {
			if topic.Matches(flt, p.topic) {
				f[i]++
			}
		}
	}
	return f
}

// finish fills the connection part of the result.
func (r *runner) finish(res *Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Connect.OK = r.connOK.Load()
	res.Connect.Failed = r.connFail.Load()
	res.Connect.Resumed = r.connResumed.Load()
	if r.connHist.Count() > 0 {
		res.Connect.Latency = latencyStats(&r.connHist)
	}
	if res.Scenario == ScenarioConn && res.Window > 0 {
		res.Connect.Rate = float64(res.Connect.OK) / res.Window
	}
	if r.first != nil {
		res.Connect.TLSVersion = tlsVersionName(r.first.TLSVersion)
		res.Connect.CipherSuite = cipherSuiteName(r.first.CipherSuite)
	}
	if len(r.errs) > 0 {
		res.Errors = map[string]int64{}
		for k, v := range r.errs {
			res.Errors[k] = v
		}
		res.ErrorExamples = r.examples
	}
	res.Warnings = append(res.Warnings, r.warnings...)
}

// brokerProbe samples the broker process at the start of the window.
type brokerProbe struct {
	pid    int
	before procSample
}

func (r *runner) brokerProbe() brokerProbe {
	p := brokerProbe{pid: r.cfg.BrokerPID}
	if p.pid > 0 {
		p.before = readProc(p.pid)
		if !p.before.ok {
			r.warn("cannot read /proc/%d: no broker CPU and memory figures", p.pid)
		}
	}
	return p
}

func (p brokerProbe) end(window time.Duration) *ProcStats {
	if p.pid <= 0 || !p.before.ok {
		return nil
	}
	after := readProc(p.pid)
	if !after.ok {
		return nil
	}
	cpu := after.cpu - p.before.cpu
	return &ProcStats{
		PID:         p.pid,
		CPUSeconds:  cpu.Seconds(),
		CPUCores:    cpu.Seconds() / window.Seconds(),
		RSSKB:       after.rssKB,
		RSSBeforeKB: p.before.rssKB,
	}
}

func genStats(before time.Duration, window time.Duration) *ProcStats {
	cpu := selfCPU() - before
	return &ProcStats{
		PID:        selfPID(),
		CPUSeconds: cpu.Seconds(),
		CPUCores:   cpu.Seconds() / window.Seconds(),
		RSSKB:      procStatusKB(selfPID(), "VmRSS:"),
	}
}

func selfPID() int { return os.Getpid() }
