package cloud

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// dataplane runs the active load balancers: a TCP listener per address
// and listener port, proxying each connection to a target, and a health
// checker per load balancer. It is safe for concurrent use.
type dataplane struct {
	interval time.Duration
	log      *slog.Logger
	disabled bool

	mu  sync.Mutex
	lbs map[string]*lbRuntime
}

// lbRuntime is one active load balancer's data plane.
type lbRuntime struct {
	id     string
	cfg    atomic.Pointer[LoadBalancer]
	cancel context.CancelFunc
	wg     sync.WaitGroup

	listeners map[string]net.Listener // "addr:port"

	cmu     sync.Mutex
	conns   map[net.Conn]struct{} // open connections, closed by stop
	stopped bool

	hmu    sync.Mutex
	health map[string]bool // healthKey -> healthy
	rr     atomic.Uint64
}

func newDataplane(interval time.Duration, log *slog.Logger, disabled bool) *dataplane {
	return &dataplane{interval: interval, log: log, disabled: disabled, lbs: map[string]*lbRuntime{}}
}

// sync makes the running load balancers those of lbs that are active, with
// their current configuration.
func (d *dataplane) sync(lbs map[string]*LoadBalancer) {
	if d.disabled {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, rt := range d.lbs {
		if l, ok := lbs[id]; !ok || l.Status != LBActive {
			rt.stop()
			delete(d.lbs, id)
		}
	}
	for id, l := range lbs {
		if l.Status != LBActive {
			continue
		}
		rt, ok := d.lbs[id]
		if !ok {
			rt = d.start(id)
			d.lbs[id] = rt
		}
		rt.configure(d, clone(l))
	}
}

func (d *dataplane) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, rt := range d.lbs {
		rt.stop()
		delete(d.lbs, id)
	}
}

// health returns the health results of load balancer id, nil if it does
// not run.
func (d *dataplane) health(id string) map[string]string {
	d.mu.Lock()
	rt := d.lbs[id]
	d.mu.Unlock()
	if rt == nil {
		return nil
	}
	rt.hmu.Lock()
	defer rt.hmu.Unlock()
	if len(rt.health) == 0 {
		return nil
	}
	out := make(map[string]string, len(rt.health))
	for k, ok := range rt.health {
		out[k] = "unhealthy"
		if ok {
			out[k] = "healthy"
		}
	}
	return out
}

func (d *dataplane) start(id string) *lbRuntime {
	ctx, cancel := context.WithCancel(context.Background())
	rt := &lbRuntime{id: id, cancel: cancel, listeners: map[string]net.Listener{}, health: map[string]bool{}, conns: map[net.Conn]struct{}{}}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		rt.checkHealth(ctx, d)
	}()
	return rt
}

// configure applies l: opens the listeners it lacks, closes those it no
// longer has, and swaps the configuration the proxies read.
func (rt *lbRuntime) configure(d *dataplane, l *LoadBalancer) {
	rt.cfg.Store(l)
	want := map[string]bool{}
	for _, a := range l.Addresses {
		for _, li := range l.Listeners {
			want[net.JoinHostPort(a, strconv.Itoa(int(li.Port)))] = true
		}
	}
	for hp, ln := range rt.listeners {
		if !want[hp] {
			ln.Close()
			delete(rt.listeners, hp)
		}
	}
	for hp := range want {
		if _, ok := rt.listeners[hp]; ok {
			continue
		}
		ln, err := net.Listen("tcp", hp)
		if err != nil {
			d.log.Error("load balancer cannot listen", "id", rt.id, "address", hp, "err", err)
			continue
		}
		d.log.Info("load balancer listening", "id", rt.id, "address", hp)
		rt.listeners[hp] = ln
		_, portStr, _ := net.SplitHostPort(hp)
		port, _ := strconv.Atoi(portStr)
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			rt.serve(d, ln, int32(port))
		}()
	}
}

// stop closes the listeners and the open connections, and waits for the
// proxies and the checker.
func (rt *lbRuntime) stop() {
	rt.cancel()
	for hp, ln := range rt.listeners {
		ln.Close()
		delete(rt.listeners, hp)
	}
	rt.cmu.Lock()
	rt.stopped = true
	for c := range rt.conns {
		c.Close()
	}
	rt.cmu.Unlock()
	rt.wg.Wait()
}

// track registers c for stop to close; false if already stopped.
func (rt *lbRuntime) track(c net.Conn) bool {
	rt.cmu.Lock()
	defer rt.cmu.Unlock()
	if rt.stopped {
		return false
	}
	rt.conns[c] = struct{}{}
	return true
}

func (rt *lbRuntime) untrack(c net.Conn) {
	rt.cmu.Lock()
	delete(rt.conns, c)
	rt.cmu.Unlock()
}

func (rt *lbRuntime) serve(d *dataplane, ln net.Listener, port int32) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				d.log.Error("load balancer accept", "id", rt.id, "err", err)
			}
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			rt.proxy(d, c, port)
		}()
	}
}

// targetAddr is the address a target is reached at: its first IP.
func targetAddr(t Target) (netip.Addr, bool) {
	for _, a := range t.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func healthKey(l *LoadBalancer, t Target, nodePort int32) string {
	if l.HealthCheck.Protocol == HealthTCP {
		return t.ID + "/" + strconv.Itoa(int(nodePort))
	}
	return t.ID
}

// proxy connects client c to a target of the listener on port: healthy
// targets first (round robin, or by client IP with ClientIP affinity), then
// the others, so that a load balancer whose checks have not run yet (or all
// fail) still tries.
func (rt *lbRuntime) proxy(d *dataplane, c net.Conn, port int32) {
	defer c.Close()
	if !rt.track(c) {
		return
	}
	defer rt.untrack(c)
	l := rt.cfg.Load()
	var li *Listener
	for i := range l.Listeners {
		if l.Listeners[i].Port == port {
			li = &l.Listeners[i]
		}
	}
	client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	if li == nil || !allowed(l.SourceRanges, client.Addr()) {
		return
	}
	n := len(l.Targets)
	if n == 0 {
		return
	}
	start := int(rt.rr.Add(1) % uint64(n))
	if l.SessionAffinity == "ClientIP" {
		h := fnv.New32a()
		h.Write(client.Addr().AsSlice())
		start = int(h.Sum32() % uint32(n))
	}
	rt.hmu.Lock()
	var healthy, others []Target
	for i := range n {
		t := l.Targets[(start+i)%n]
		if rt.health[healthKey(l, t, li.NodePort)] {
			healthy = append(healthy, t)
		} else {
			others = append(others, t)
		}
	}
	rt.hmu.Unlock()
	for _, t := range append(healthy, others...) {
		ip, ok := targetAddr(t)
		if !ok {
			continue
		}
		up, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, uint16(li.NodePort)).String(), 2*time.Second)
		if err != nil {
			continue
		}
		if !rt.track(up) {
			up.Close()
			return
		}
		pipe(c, up)
		rt.untrack(up)
		return
	}
	d.log.Info("load balancer: no target accepted the connection", "id", rt.id, "port", port)
}

func allowed(ranges []string, ip netip.Addr) bool {
	if len(ranges) == 0 {
		return true
	}
	for _, r := range ranges {
		if p, err := netip.ParsePrefix(r); err == nil && p.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// pipe copies both ways until both sides are done, half-closing as each
// direction ends.
func pipe(a, b net.Conn) {
	defer b.Close()
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// checkHealth checks every target now and then every interval.
func (rt *lbRuntime) checkHealth(ctx context.Context, d *dataplane) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		l := rt.cfg.Load()
		if l != nil {
			results := map[string]bool{}
			for _, tg := range l.Targets {
				ip, ok := targetAddr(tg)
				for _, li := range l.Listeners {
					key := healthKey(l, tg, li.NodePort)
					if _, done := results[key]; done {
						continue
					}
					results[key] = ok && probe(ctx, client, l.HealthCheck, ip, li.NodePort)
				}
			}
			rt.hmu.Lock()
			rt.health = results
			rt.hmu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func probe(ctx context.Context, client *http.Client, hc HealthCheck, ip netip.Addr, nodePort int32) bool {
	if hc.Protocol == HealthTCP {
		var dl net.Dialer
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := dl.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(nodePort)).String())
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	path := hc.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+netip.AddrPortFrom(ip, uint16(hc.Port)).String()+path, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}
