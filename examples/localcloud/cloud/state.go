package cloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// StateVersion is the format version of the state file.
const StateVersion = 1

// State is everything the local cloud holds, as its state file stores it:
// the cloud and the CCM restart independently, and a restarted cloud serves
// (and proxies) what it held.
type State struct {
	Version       int                      `json:"version"`
	NextID        int64                    `json:"nextID"`
	Instances     map[string]*Instance     `json:"instances"`
	LoadBalancers map[string]*LoadBalancer `json:"loadBalancers"`
	Routes        map[string]*Route        `json:"routes"`
	// Holds are load-balancer names kept provisioning until released ("*":
	// every new one).
	Holds []string `json:"holds,omitempty"`
}

// ErrInvalidState is wrapped by ParseState's errors.
var ErrInvalidState = errors.New("invalid localcloud state")

func newState() *State {
	return &State{
		Version:       StateVersion,
		NextID:        1,
		Instances:     map[string]*Instance{},
		LoadBalancers: map[string]*LoadBalancer{},
		Routes:        map[string]*Route{},
	}
}

// ParseState parses and checks a state file. Empty input is an empty
// state. Errors wrap ErrInvalidState; it never panics.
func ParseState(data []byte) (*State, error) {
	s := newState()
	if len(bytes.TrimSpace(data)) == 0 {
		return s, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the state object", ErrInvalidState)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	return s, nil
}

func (s *State) check() error {
	if s.Version != StateVersion {
		return fmt.Errorf("version %d, want %d", s.Version, StateVersion)
	}
	if s.NextID < 1 {
		return fmt.Errorf("nextID %d must be positive", s.NextID)
	}
	if s.Instances == nil {
		s.Instances = map[string]*Instance{}
	}
	if s.LoadBalancers == nil {
		s.LoadBalancers = map[string]*LoadBalancer{}
	}
	if s.Routes == nil {
		s.Routes = map[string]*Route{}
	}
	var errs []error
	for id, in := range s.Instances {
		if in == nil || in.ID != id {
			errs = append(errs, fmt.Errorf("instance %q: missing or stored under another ID", id))
			continue
		}
		if err := checkInstance(in); err != nil {
			errs = append(errs, err)
		}
	}
	names := map[string]string{}
	addrs := map[string]string{}
	for id, l := range s.LoadBalancers {
		if l == nil || l.ID != id {
			errs = append(errs, fmt.Errorf("load balancer %q: missing or stored under another ID", id))
			continue
		}
		if err := checkLoadBalancer(l); err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := names[l.Name]; ok {
			errs = append(errs, fmt.Errorf("load balancers %s and %s share the name %q", other, id, l.Name))
		}
		names[l.Name] = id
		switch l.Status {
		case LBProvisioning, LBActive, LBDeleting, LBFailed:
		default:
			errs = append(errs, fmt.Errorf("load balancer %s: unknown status %q", id, l.Status))
		}
		for _, a := range l.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				errs = append(errs, fmt.Errorf("load balancer %s: address %q: %w", id, a, err))
			}
			if other, ok := addrs[a]; ok {
				errs = append(errs, fmt.Errorf("load balancers %s and %s share the address %s", other, id, a))
			}
			addrs[a] = id
		}
	}
	for name, r := range s.Routes {
		if r == nil || r.Name != name {
			errs = append(errs, fmt.Errorf("route %q: missing or stored under another name", name))
			continue
		}
		if err := checkRoute(r); err != nil {
			errs = append(errs, err)
		}
	}
	for _, h := range s.Holds {
		if h == "" {
			errs = append(errs, errors.New("empty hold name"))
		}
	}
	return errors.Join(errs...)
}

func checkInstance(in *Instance) error {
	var errs []error
	if in.ID == "" || strings.ContainsAny(in.ID, "/?#") {
		errs = append(errs, fmt.Errorf("instance ID %q: must be non-empty without '/', '?' or '#'", in.ID))
	}
	switch in.State {
	case InstancePending, InstanceRunning, InstanceStopped, InstanceTerminated:
	default:
		errs = append(errs, fmt.Errorf("instance %s: unknown state %q", in.ID, in.State))
	}
	for _, a := range in.Addresses {
		if a.Type == "" || a.Address == "" {
			errs = append(errs, fmt.Errorf("instance %s: address %+v needs a type and an address", in.ID, a))
		}
	}
	for _, c := range in.PodCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs = append(errs, fmt.Errorf("instance %s: pod CIDR: %w", in.ID, err))
		}
	}
	return errors.Join(errs...)
}

// checkLoadBalancer checks a load balancer's configuration (what a client
// may send).
func checkLoadBalancer(l *LoadBalancer) error {
	var errs []error
	if l.Name == "" || strings.ContainsAny(l.Name, "/?#") {
		errs = append(errs, fmt.Errorf("load balancer name %q: must be non-empty without '/', '?' or '#'", l.Name))
	}
	if len(l.Listeners) == 0 {
		errs = append(errs, fmt.Errorf("load balancer %q: no listeners", l.Name))
	}
	ports := map[int32]bool{}
	for _, li := range l.Listeners {
		if li.Protocol != "TCP" {
			errs = append(errs, fmt.Errorf("load balancer %q: listener %d: protocol %q is not supported (TCP only)", l.Name, li.Port, li.Protocol))
		}
		if li.Port < 1 || li.Port > 65535 || li.NodePort < 0 || li.NodePort > 65535 {
			errs = append(errs, fmt.Errorf("load balancer %q: listener port %d or node port %d out of range", l.Name, li.Port, li.NodePort))
		}
		if ports[li.Port] {
			errs = append(errs, fmt.Errorf("load balancer %q: port %d listed twice", l.Name, li.Port))
		}
		ports[li.Port] = true
	}
	for _, t := range l.Targets {
		if t.ID == "" {
			errs = append(errs, fmt.Errorf("load balancer %q: a target without an ID", l.Name))
		}
		for _, a := range t.Addresses {
			if _, err := netip.ParseAddr(a); err != nil {
				errs = append(errs, fmt.Errorf("load balancer %q: target %s: %w", l.Name, t.ID, err))
			}
		}
	}
	switch l.HealthCheck.Protocol {
	case "", HealthHTTP, HealthTCP:
	default:
		errs = append(errs, fmt.Errorf("load balancer %q: health-check protocol %q (want http or tcp)", l.Name, l.HealthCheck.Protocol))
	}
	if l.HealthCheck.Port < 0 || l.HealthCheck.Port > 65535 {
		errs = append(errs, fmt.Errorf("load balancer %q: health-check port %d out of range", l.Name, l.HealthCheck.Port))
	}
	for _, r := range l.SourceRanges {
		if _, err := netip.ParsePrefix(r); err != nil {
			errs = append(errs, fmt.Errorf("load balancer %q: source range: %w", l.Name, err))
		}
	}
	for _, f := range l.IPFamilies {
		if f != "IPv4" {
			errs = append(errs, fmt.Errorf("load balancer %q: IP family %q is not supported (IPv4 only)", l.Name, f))
		}
	}
	for _, a := range l.RequestedAddresses {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
			errs = append(errs, fmt.Errorf("load balancer %q: requested address %q is not an IPv4 address", l.Name, a))
		}
	}
	if len(l.RequestedAddresses) > 1 {
		errs = append(errs, fmt.Errorf("load balancer %q: at most one requested address", l.Name))
	}
	return errors.Join(errs...)
}

func checkRoute(r *Route) error {
	var errs []error
	if r.Name == "" || strings.ContainsAny(r.Name, "/?#") {
		errs = append(errs, fmt.Errorf("route name %q: must be non-empty without '/', '?' or '#'", r.Name))
	}
	if p, err := netip.ParsePrefix(r.Destination); err != nil || p != p.Masked() {
		errs = append(errs, fmt.Errorf("route %q: destination %q is not a masked CIDR", r.Name, r.Destination))
	}
	if r.Target == "" {
		errs = append(errs, fmt.Errorf("route %q: no target", r.Name))
	}
	if r.NextHop != "" {
		if _, err := netip.ParseAddr(r.NextHop); err != nil {
			errs = append(errs, fmt.Errorf("route %q: next hop: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// LoadState reads the state file at path; a missing file is an empty state.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, err
	}
	s, err := ParseState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Save writes s to path atomically: a temporary file in the same
// directory, synced, then renamed over path, so a crash leaves the old or
// the new state, never a torn one.
func (s *State) Save(path string) error {
	data, err := json.MarshalIndent(s.persisted(), "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving the state to %s: %w", path, err)
	}
	return nil
}

// persisted returns a copy of s without runtime fields (health).
func (s *State) persisted() *State {
	out := *s
	out.LoadBalancers = make(map[string]*LoadBalancer, len(s.LoadBalancers))
	for id, l := range s.LoadBalancers {
		c := *l
		c.Health = nil
		out.LoadBalancers[id] = &c
	}
	out.Holds = slices.Clone(s.Holds)
	slices.Sort(out.Holds)
	return &out
}
