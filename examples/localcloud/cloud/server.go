package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Options configures a Cloud. The zero value is an in-memory cloud
// answering without authentication, load balancers active at once, from
// DefaultAddressRange.
type Options struct {
	// StatePath is the state file, read at start and rewritten atomically
	// after every change. Empty: the state is kept in memory only.
	StatePath string
	// Token, when set, is the bearer token every request must carry.
	Token string
	// AddressRange is where load-balancer addresses come from (default
	// DefaultAddressRange). Load balancers listen on them: on Linux every
	// 127.0.0.0/8 address is a loopback address, with nothing to configure.
	AddressRange netip.Prefix
	// ProvisionDelay is how long a new load balancer stays provisioning
	// (default 0: active at once).
	ProvisionDelay time.Duration
	// DeleteDelay is how long a deleted load balancer stays deleting
	// (default 0: gone at once).
	DeleteDelay time.Duration
	// HealthInterval is the time between health checks of each target
	// (default 2s).
	HealthInterval time.Duration
	// MaxRoutes is the route table's capacity, hand-made routes included
	// (default 0: unlimited).
	MaxRoutes int
	// DisableDataPlane keeps load balancers from listening and proxying:
	// the API only (for tests of the API).
	DisableDataPlane bool
	// Clock times provisioning and deletion (default the real clock).
	// Health checks and proxying use real time.
	Clock clock.WithTicker
	// Logger logs API writes and data-plane events (default: discard).
	Logger *slog.Logger
}

// DefaultAddressRange is the default load-balancer address range.
var DefaultAddressRange = netip.MustParsePrefix("127.0.100.0/24")

// Cloud is the local cloud: its HTTP API (Handler) over a State, and the
// data plane of its load balancers. It is safe for concurrent use.
type Cloud struct {
	opts  Options
	clock clock.WithTicker
	log   *slog.Logger
	dp    *dataplane

	mu    sync.Mutex
	state *State
}

// New returns a Cloud over the state in opts.StatePath (an empty one if
// the file does not exist), with the data plane of every active load
// balancer started. Call Close to stop it.
func New(opts Options) (*Cloud, error) {
	if !opts.AddressRange.IsValid() {
		opts.AddressRange = DefaultAddressRange
	}
	if !opts.AddressRange.Addr().Is4() {
		return nil, fmt.Errorf("localcloud: address range %s: IPv4 only", opts.AddressRange)
	}
	opts.AddressRange = opts.AddressRange.Masked()
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = 2 * time.Second
	}
	if opts.ProvisionDelay < 0 || opts.DeleteDelay < 0 || opts.MaxRoutes < 0 {
		return nil, errors.New("localcloud: negative ProvisionDelay, DeleteDelay or MaxRoutes")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	st := newState()
	if opts.StatePath != "" {
		var err error
		if st, err = LoadState(opts.StatePath); err != nil {
			return nil, err
		}
	}
	c := &Cloud{opts: opts, clock: opts.Clock, log: opts.Logger, state: st}
	c.dp = newDataplane(opts.HealthInterval, opts.Logger, opts.DisableDataPlane)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked()
	c.dp.sync(c.state.LoadBalancers)
	return c, nil
}

// Close stops every load balancer's listeners and health checks. The state
// stays in the state file.
func (c *Cloud) Close() error {
	c.dp.close()
	return nil
}

// Run advances provisioning and deletion on the clock until ctx ends, so
// that load balancers start serving without being polled.
func (c *Cloud) Run(ctx context.Context) {
	t := c.clock.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.mu.Lock()
			if c.advanceLocked() {
				c.commitLocked()
			}
			c.mu.Unlock()
		}
	}
}

// Handler returns the HTTP API.
func (c *Cloud) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", c.info)
	mux.HandleFunc("GET /v1/instances", c.listInstances)
	mux.HandleFunc("GET /v1/instances/{id}", c.getInstance)
	mux.HandleFunc("PUT /v1/instances/{id}", c.putInstance)
	mux.HandleFunc("DELETE /v1/instances/{id}", c.deleteInstance)
	mux.HandleFunc("GET /v1/loadbalancers", c.listLoadBalancers)
	mux.HandleFunc("POST /v1/loadbalancers", c.createLoadBalancer)
	mux.HandleFunc("GET /v1/loadbalancers/{id}", c.getLoadBalancer)
	mux.HandleFunc("PUT /v1/loadbalancers/{id}", c.updateLoadBalancer)
	mux.HandleFunc("PUT /v1/loadbalancers/{id}/targets", c.setTargets)
	mux.HandleFunc("DELETE /v1/loadbalancers/{id}", c.deleteLoadBalancer)
	mux.HandleFunc("GET /v1/routes", c.listRoutes)
	mux.HandleFunc("PUT /v1/routes/{name}", c.putRoute)
	mux.HandleFunc("DELETE /v1/routes/{name}", c.deleteRoute)
	mux.HandleFunc("GET /v1/holds", c.listHolds)
	mux.HandleFunc("PUT /v1/holds/{name}", c.putHold)
	mux.HandleFunc("DELETE /v1/holds/{name}", c.deleteHold)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.opts.Token != "" && r.Header.Get("Authorization") != "Bearer "+c.opts.Token {
			writeError(w, http.StatusUnauthorized, ErrorBody{Code: CodeUnauthorized, Message: "missing or wrong bearer token"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// apiError is an error answer a handler returns.
type apiError struct {
	status int
	body   ErrorBody
}

func (e *apiError) Error() string { return e.body.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, body: ErrorBody{Code: code, Message: fmt.Sprintf(format, args...)}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func writeError(w http.ResponseWriter, status int, body ErrorBody) {
	writeJSON(w, status, body)
}

// respond writes v (or err) as the answer.
func respond(w http.ResponseWriter, status int, v any, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		writeError(w, ae.status, ae.body)
	case err != nil:
		writeError(w, http.StatusInternalServerError, ErrorBody{Code: CodeInternal, Message: err.Error()})
	case v == nil:
		w.WriteHeader(status)
	default:
		writeJSON(w, status, v)
	}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, CodeInvalid, "request body: %v", err)
	}
	return nil
}

// clone deep-copies v through JSON.
func clone[T any](v *T) *T {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(data, out); err != nil {
		panic(err)
	}
	return out
}

// do runs change under the lock after advancing time; when it reports a
// change, the state is saved and the data plane synced before the answer.
func (c *Cloud) do(change func(s *State) (changed bool, err error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	advanced := c.advanceLocked()
	changed, err := change(c.state)
	if changed || advanced {
		if serr := c.commitLocked(); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// commitLocked saves the state and syncs the data plane.
func (c *Cloud) commitLocked() error {
	c.dp.sync(c.state.LoadBalancers)
	if c.opts.StatePath == "" {
		return nil
	}
	return c.state.Save(c.opts.StatePath)
}

// advanceLocked moves load balancers through provisioning and deletion by
// the clock, and reports whether anything changed.
func (c *Cloud) advanceLocked() bool {
	now := c.clock.Now()
	changed := false
	for id, l := range c.state.LoadBalancers {
		switch l.Status {
		case LBProvisioning:
			held := c.heldLocked(l.Name)
			switch {
			case held && l.Message != "held":
				l.Message, changed = "held", true
			case !held && !now.Before(l.ReadyAt):
				l.Status, l.Message, changed = LBActive, "", true
				c.log.Info("load balancer active", "id", id, "name", l.Name, "addresses", l.Addresses)
			case !held && l.Message != "provisioning":
				l.Message, changed = "provisioning", true
			}
		case LBDeleting:
			if !now.Before(l.GoneAt) {
				delete(c.state.LoadBalancers, id)
				changed = true
				c.log.Info("load balancer gone", "id", id, "name", l.Name)
			}
		}
	}
	return changed
}

func (c *Cloud) heldLocked(name string) bool {
	return slices.Contains(c.state.Holds, name) || slices.Contains(c.state.Holds, "*")
}

func (c *Cloud) info(w http.ResponseWriter, _ *http.Request) {
	respond(w, http.StatusOK, &Info{
		AddressRange:   c.opts.AddressRange.String(),
		ProvisionDelay: c.opts.ProvisionDelay.String(),
		MaxRoutes:      c.opts.MaxRoutes,
	}, nil)
}

// Instances.

func (c *Cloud) listInstances(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	var out []*Instance
	err := c.do(func(s *State) (bool, error) {
		for _, in := range s.Instances {
			if name == "" || in.Name == name {
				out = append(out, clone(in))
			}
		}
		return false, nil
	})
	slices.SortFunc(out, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })
	if out == nil {
		out = []*Instance{}
	}
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) getInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var out *Instance
	err := c.do(func(s *State) (bool, error) {
		in, ok := s.Instances[id]
		if !ok {
			return false, errorf(http.StatusNotFound, CodeNotFound, "no instance %q", id)
		}
		out = clone(in)
		return false, nil
	})
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) putInstance(w http.ResponseWriter, r *http.Request) {
	var in Instance
	if err := decode(r, &in); err != nil {
		respond(w, 0, nil, err)
		return
	}
	if in.ID == "" {
		in.ID = r.PathValue("id")
	}
	if in.State == "" {
		in.State = InstanceRunning
	}
	err := c.do(func(s *State) (bool, error) {
		if in.ID != r.PathValue("id") {
			return false, errorf(http.StatusBadRequest, CodeInvalid, "instance ID %q does not match the path", in.ID)
		}
		if err := checkInstance(&in); err != nil {
			return false, errorf(http.StatusBadRequest, CodeInvalid, "%v", err)
		}
		s.Instances[in.ID] = clone(&in)
		c.log.Info("instance registered", "id", in.ID, "name", in.Name)
		return true, nil
	})
	respond(w, http.StatusOK, &in, err)
}

func (c *Cloud) deleteInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := c.do(func(s *State) (bool, error) {
		if _, ok := s.Instances[id]; !ok {
			return false, errorf(http.StatusNotFound, CodeNotFound, "no instance %q", id)
		}
		delete(s.Instances, id)
		return true, nil
	})
	respond(w, http.StatusNoContent, nil, err)
}

// Load balancers.

// view returns what the API shows of l: a copy with the health results.
func (c *Cloud) view(l *LoadBalancer) *LoadBalancer {
	out := clone(l)
	out.Health = c.dp.health(l.ID)
	return out
}

// parseTags parses ?tag=key=value filters.
func parseTags(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range r.URL.Query()["tag"] {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return nil, errorf(http.StatusBadRequest, CodeInvalid, "tag filter %q: want key=value", t)
		}
		out[k] = v
	}
	return out, nil
}

func (c *Cloud) listLoadBalancers(w http.ResponseWriter, r *http.Request) {
	tags, err := parseTags(r)
	if err != nil {
		respond(w, 0, nil, err)
		return
	}
	out := []*LoadBalancer{}
	err = c.do(func(s *State) (bool, error) {
	next:
		for _, l := range s.LoadBalancers {
			for k, v := range tags {
				if l.Tags[k] != v {
					continue next
				}
			}
			out = append(out, c.view(l))
		}
		return false, nil
	})
	slices.SortFunc(out, func(a, b *LoadBalancer) int { return strings.Compare(a.ID, b.ID) })
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) getLoadBalancer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var out *LoadBalancer
	err := c.do(func(s *State) (bool, error) {
		l, ok := s.LoadBalancers[id]
		if !ok {
			return false, errorf(http.StatusNotFound, CodeNotFound, "no load balancer %q", id)
		}
		out = c.view(l)
		return false, nil
	})
	respond(w, http.StatusOK, out, err)
}

// config returns the client-settable fields of in.
func config(in *LoadBalancer) *LoadBalancer {
	return &LoadBalancer{
		Name:                   in.Name,
		Tags:                   in.Tags,
		Listeners:              in.Listeners,
		Targets:                in.Targets,
		HealthCheck:            in.HealthCheck,
		SourceRanges:           in.SourceRanges,
		IPFamilies:             in.IPFamilies,
		RequestedAddresses:     in.RequestedAddresses,
		SessionAffinity:        in.SessionAffinity,
		AffinityTimeoutSeconds: in.AffinityTimeoutSeconds,
		Options:                in.Options,
	}
}

func (c *Cloud) createLoadBalancer(w http.ResponseWriter, r *http.Request) {
	var in LoadBalancer
	if err := decode(r, &in); err != nil {
		respond(w, 0, nil, err)
		return
	}
	l := clone(config(&in))
	if err := checkLoadBalancer(l); err != nil {
		respond(w, 0, nil, errorf(http.StatusBadRequest, CodeInvalid, "%v", err))
		return
	}
	var out *LoadBalancer
	err := c.do(func(s *State) (bool, error) {
		for _, e := range s.LoadBalancers {
			if e.Name == l.Name {
				ae := errorf(http.StatusConflict, CodeNameInUse, "a load balancer named %q exists (%s)", l.Name, e.ID)
				ae.body.LoadBalancer = c.view(e)
				return false, ae
			}
		}
		addr, err := c.pickAddressLocked(l.RequestedAddresses)
		if err != nil {
			return false, err
		}
		now := c.clock.Now()
		l.ID = fmt.Sprintf("lb-%06d", s.NextID)
		s.NextID++
		l.Addresses = []string{addr.String()}
		l.CreatedAt = now
		l.ReadyAt = now.Add(c.opts.ProvisionDelay)
		l.Status = LBProvisioning
		s.LoadBalancers[l.ID] = l
		c.advanceLocked()
		c.log.Info("load balancer created", "id", l.ID, "name", l.Name, "address", addr, "status", l.Status)
		out = c.view(l)
		return true, nil
	})
	respond(w, http.StatusCreated, out, err)
}

// pickAddressLocked returns the requested address, if free and in range, or
// the lowest free one.
func (c *Cloud) pickAddressLocked(requested []string) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, l := range c.state.LoadBalancers {
		for _, a := range l.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				used[ip] = true
			}
		}
	}
	if len(requested) > 0 {
		ip, _ := netip.ParseAddr(requested[0])
		switch {
		case !c.opts.AddressRange.Contains(ip):
			return netip.Addr{}, errorf(http.StatusBadRequest, CodeInvalid, "requested address %s is outside the cloud's range %s", ip, c.opts.AddressRange)
		case used[ip]:
			return netip.Addr{}, errorf(http.StatusConflict, CodeAddressInUse, "address %s is in use", ip)
		}
		return ip, nil
	}
	// Skip the range's first address (the network address).
	for ip := c.opts.AddressRange.Addr().Next(); c.opts.AddressRange.Contains(ip); ip = ip.Next() {
		if !used[ip] {
			return ip, nil
		}
	}
	return netip.Addr{}, errorf(http.StatusConflict, CodeAddressExhausted, "no free address in %s", c.opts.AddressRange)
}

func (c *Cloud) updateLoadBalancer(w http.ResponseWriter, r *http.Request) {
	var in LoadBalancer
	if err := decode(r, &in); err != nil {
		respond(w, 0, nil, err)
		return
	}
	next := clone(config(&in))
	if err := checkLoadBalancer(next); err != nil {
		respond(w, 0, nil, errorf(http.StatusBadRequest, CodeInvalid, "%v", err))
		return
	}
	id := r.PathValue("id")
	var out *LoadBalancer
	err := c.do(func(s *State) (bool, error) {
		l, ok := s.LoadBalancers[id]
		switch {
		case !ok:
			return false, errorf(http.StatusNotFound, CodeNotFound, "no load balancer %q", id)
		case l.Status == LBDeleting:
			return false, errorf(http.StatusConflict, CodeInvalid, "load balancer %s is being deleted", id)
		case next.Name != l.Name:
			return false, errorf(http.StatusBadRequest, CodeInvalid, "load balancer %s: the name cannot change (%q to %q)", id, l.Name, next.Name)
		case !slices.Equal(next.RequestedAddresses, l.RequestedAddresses):
			return false, errorf(http.StatusBadRequest, CodeInvalid, "load balancer %s: the requested addresses are fixed at creation", id)
		}
		next.ID, next.Status, next.Message = l.ID, l.Status, l.Message
		next.Addresses, next.CreatedAt, next.ReadyAt = l.Addresses, l.CreatedAt, l.ReadyAt
		if next.Status == LBFailed {
			next.Status, next.Message = LBActive, ""
		}
		s.LoadBalancers[id] = next
		c.log.Info("load balancer updated", "id", id, "name", l.Name)
		out = c.view(next)
		return true, nil
	})
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) setTargets(w http.ResponseWriter, r *http.Request) {
	var targets []Target
	if err := decode(r, &targets); err != nil {
		respond(w, 0, nil, err)
		return
	}
	id := r.PathValue("id")
	var out *LoadBalancer
	err := c.do(func(s *State) (bool, error) {
		l, ok := s.LoadBalancers[id]
		switch {
		case !ok:
			return false, errorf(http.StatusNotFound, CodeNotFound, "no load balancer %q", id)
		case l.Status == LBDeleting:
			return false, errorf(http.StatusConflict, CodeInvalid, "load balancer %s is being deleted", id)
		}
		next := clone(l)
		next.Targets = targets
		if err := checkLoadBalancer(next); err != nil {
			return false, errorf(http.StatusBadRequest, CodeInvalid, "%v", err)
		}
		s.LoadBalancers[id] = next
		c.log.Info("load balancer targets set", "id", id, "targets", len(targets))
		out = c.view(next)
		return true, nil
	})
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) deleteLoadBalancer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	status := http.StatusNoContent
	err := c.do(func(s *State) (bool, error) {
		l, ok := s.LoadBalancers[id]
		switch {
		case !ok:
			return false, errorf(http.StatusNotFound, CodeNotFound, "no load balancer %q", id)
		case l.Status == LBDeleting:
			status = http.StatusAccepted
			return false, nil
		case c.opts.DeleteDelay == 0:
			delete(s.LoadBalancers, id)
		default:
			l.Status, l.Message, l.GoneAt = LBDeleting, "deleting", c.clock.Now().Add(c.opts.DeleteDelay)
			status = http.StatusAccepted
		}
		c.log.Info("load balancer deleted", "id", id, "name", l.Name)
		return true, nil
	})
	respond(w, status, nil, err)
}

// Routes.

func (c *Cloud) listRoutes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cluster, all := q.Get("cluster"), !q.Has("cluster")
	out := []*Route{}
	err := c.do(func(s *State) (bool, error) {
		for _, rt := range s.Routes {
			if all || rt.Cluster == cluster {
				out = append(out, clone(rt))
			}
		}
		return false, nil
	})
	slices.SortFunc(out, func(a, b *Route) int { return strings.Compare(a.Name, b.Name) })
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) putRoute(w http.ResponseWriter, r *http.Request) {
	var in Route
	if err := decode(r, &in); err != nil {
		respond(w, 0, nil, err)
		return
	}
	if in.Name == "" {
		in.Name = r.PathValue("name")
	}
	status := http.StatusCreated
	err := c.do(func(s *State) (bool, error) {
		if in.Name != r.PathValue("name") {
			return false, errorf(http.StatusBadRequest, CodeInvalid, "route name %q does not match the path", in.Name)
		}
		if err := checkRoute(&in); err != nil {
			return false, errorf(http.StatusBadRequest, CodeInvalid, "%v", err)
		}
		if old, ok := s.Routes[in.Name]; ok {
			if old.Destination == in.Destination && old.Target == in.Target && old.Cluster == in.Cluster {
				status = http.StatusOK
				return false, nil
			}
			return false, errorf(http.StatusConflict, CodeNameInUse, "route %q exists with destination %s and target %s", in.Name, old.Destination, old.Target)
		}
		if c.opts.MaxRoutes > 0 && len(s.Routes) >= c.opts.MaxRoutes {
			ae := errorf(http.StatusConflict, CodeTableFull, "the route table is full (%d routes)", c.opts.MaxRoutes)
			ae.body.Limit = c.opts.MaxRoutes
			return false, ae
		}
		s.Routes[in.Name] = clone(&in)
		c.log.Info("route created", "name", in.Name, "destination", in.Destination, "target", in.Target)
		return true, nil
	})
	respond(w, status, &in, err)
}

func (c *Cloud) deleteRoute(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := c.do(func(s *State) (bool, error) {
		if _, ok := s.Routes[name]; !ok {
			return false, errorf(http.StatusNotFound, CodeNotFound, "no route %q", name)
		}
		delete(s.Routes, name)
		c.log.Info("route deleted", "name", name)
		return true, nil
	})
	respond(w, http.StatusNoContent, nil, err)
}

// Holds: the test's hand on provisioning.

func (c *Cloud) listHolds(w http.ResponseWriter, _ *http.Request) {
	var out []string
	err := c.do(func(s *State) (bool, error) {
		out = slices.Sorted(slices.Values(s.Holds))
		return false, nil
	})
	if out == nil {
		out = []string{}
	}
	respond(w, http.StatusOK, out, err)
}

func (c *Cloud) putHold(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := c.do(func(s *State) (bool, error) {
		if slices.Contains(s.Holds, name) {
			return false, nil
		}
		s.Holds = append(s.Holds, name)
		c.advanceLocked()
		return true, nil
	})
	respond(w, http.StatusNoContent, nil, err)
}

func (c *Cloud) deleteHold(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := c.do(func(s *State) (bool, error) {
		i := slices.Index(s.Holds, name)
		if i < 0 {
			return false, nil
		}
		s.Holds = slices.Delete(s.Holds, i, i+1)
		c.advanceLocked()
		return true, nil
	})
	respond(w, http.StatusNoContent, nil, err)
}
