package lb

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Spec is the desired load balancer of one Service, computed by ccmkit from
// the Service and the Nodes the service controller passes, or the state of a
// cloud load balancer as the backend observes it (LoadBalancer.Spec). The
// backend stores what it needs to report the same Spec back: ccmkit compares
// the observed Spec with the desired one and writes only when they differ.
//
// It is plain data. Slices are sorted as [Spec.Normalize] sorts them.
type Spec struct {
	// Name is the load balancer's name: [Name] of the Service UID. The
	// cloud keeps names unique (it is the create's idempotency key). It is
	// set at creation and never changed: an adopted load balancer keeps the
	// name it had, so Equal ignores Name.
	Name string
	// Key is the ownership key the backend stores on the cloud resource
	// (a tag, a label, a description field) and finds the load balancer by.
	Key Key
	// Service is the Service the load balancer serves.
	Service ServiceRef
	// Listeners are the Service's ports.
	Listeners []Listener
	// Targets are the Nodes traffic goes to, keyed by providerID (Nodes
	// without one are left out).
	Targets []Target
	// HealthCheck is how the load balancer checks each backend.
	HealthCheck HealthCheck
	// SourceRanges restrict the clients allowed to connect (empty: all).
	SourceRanges []netip.Prefix
	// IPFamilies are the Service's families, in spec.ipFamilies order.
	IPFamilies []v1.IPFamily
	// Addresses are the addresses asked for: spec.loadBalancerIP, the
	// ccmkit load-balancer-ips annotation, or what an address pool
	// allocated. Empty: the cloud picks.
	Addresses []netip.Addr
	// SessionAffinity is ClientIP or None; AffinityTimeoutSeconds is set
	// for ClientIP.
	SessionAffinity        v1.ServiceAffinity
	AffinityTimeoutSeconds int32
	// Options are the provider's annotations, parsed and in canonical form,
	// defaults included: name -> value. Backends store them and report
	// them back, so a create-only option changed after creation is seen.
	Options map[string]string
}

// ServiceRef names the Service a load balancer serves.
type ServiceRef struct {
	Namespace, Name string
	UID             types.UID
}

// String returns "namespace/name".
func (r ServiceRef) String() string { return r.Namespace + "/" + r.Name }

// Listener is one port of the load balancer.
type Listener struct {
	// Name is the Service port's name.
	Name string
	// Protocol is TCP, UDP or SCTP.
	Protocol v1.Protocol
	// Port is the port clients connect to.
	Port int32
	// NodePort is the port on each backend node.
	NodePort int32
	// AppProtocol is the Service port's appProtocol, if set.
	AppProtocol string
}

// Target is one Node behind the load balancer.
type Target struct {
	// ProviderID is the Node's spec.providerID: the backend's identity.
	ProviderID string
	// NodeName is the Node's name.
	NodeName string
	// Addresses are the Node's InternalIP addresses (ExternalIP ones when
	// it has no InternalIP), in status order.
	Addresses []netip.Addr
}

// HealthCheck is an HTTP check of each backend node.
type HealthCheck struct {
	// Port is the node port checked: the Service's healthCheckNodePort for
	// externalTrafficPolicy Local, else kube-proxy's 10256.
	Port int32
	// Path is the HTTP path: "/healthz".
	Path string
}

// KubeProxyHealthPort is kube-proxy's health port, checked for Services with
// externalTrafficPolicy Cluster.
const KubeProxyHealthPort = 10256

// Status is a cloud load balancer's provisioning state.
type Status int

// The states of a load balancer.
const (
	// StatusActive: provisioned and serving.
	StatusActive Status = iota
	// StatusPending: being created or changed; the Reconciler polls it with
	// a RetryError instead of blocking a worker.
	StatusPending
	// StatusDeleting: being deleted.
	StatusDeleting
	// StatusFailed: the cloud gave up provisioning it; Ensure updates it
	// again (the backend may re-create it).
	StatusFailed
)

func (s Status) String() string {
	switch s {
	case StatusActive:
		return "Active"
	case StatusPending:
		return "Pending"
	case StatusDeleting:
		return "Deleting"
	case StatusFailed:
		return "Failed"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// LoadBalancer is a cloud load balancer as the backend observes it.
type LoadBalancer struct {
	// ID is the cloud's identifier.
	ID string
	// Spec is the load balancer's configuration as stored in the cloud,
	// including the ownership key (a zero Key: not owned by any ccmkit
	// cluster, as a load balancer made by a provider's previous CCM).
	Spec Spec
	// Status is its provisioning state.
	Status Status
	// Message explains a Pending or Failed status, for Events.
	Message string
	// Ingress are the addresses clients use.
	Ingress []Ingress
}

// Ingress is one address of a load balancer.
type Ingress struct {
	// IP or Hostname: one of them is set.
	IP       netip.Addr
	Hostname string
	// IPMode is VIP when the load balancer delivers packets to the nodes
	// with the destination set to its IP, Proxy when it proxies
	// connections. Empty means VIP.
	IPMode v1.LoadBalancerIPMode
}

// Normalize sorts s's slices in the canonical order: listeners by protocol
// and port, targets by providerID, source ranges and addresses by value
// (IPFamilies keep their order). Equal specs normalize to equal values.
func (s *Spec) Normalize() {
	slices.SortFunc(s.Listeners, func(a, b Listener) int {
		if c := strings.Compare(string(a.Protocol), string(b.Protocol)); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	slices.SortFunc(s.Targets, func(a, b Target) int { return strings.Compare(a.ProviderID, b.ProviderID) })
	slices.SortFunc(s.SourceRanges, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	slices.SortFunc(s.Addresses, netip.Addr.Compare)
}

// Clone returns a deep copy of s.
func (s *Spec) Clone() *Spec {
	out := *s
	out.Listeners = slices.Clone(s.Listeners)
	out.Targets = make([]Target, len(s.Targets))
	for i, b := range s.Targets {
		b.Addresses = slices.Clone(b.Addresses)
		out.Targets[i] = b
	}
	if s.Targets == nil {
		out.Targets = nil
	}
	out.SourceRanges = slices.Clone(s.SourceRanges)
	out.IPFamilies = slices.Clone(s.IPFamilies)
	out.Addresses = slices.Clone(s.Addresses)
	if s.Options != nil {
		out.Options = make(map[string]string, len(s.Options))
		for k, v := range s.Options {
			out.Options[k] = v
		}
	}
	return &out
}

// Clone returns a deep copy of lb.
func (lb *LoadBalancer) Clone() *LoadBalancer {
	out := *lb
	out.Spec = *lb.Spec.Clone()
	out.Ingress = slices.Clone(lb.Ingress)
	return &out
}

// Equal reports whether s and o configure the same load balancer, ignoring
// Name (fixed at creation) and the order of slices other than IPFamilies.
// A nil and an empty slice or map are equal.
func (s *Spec) Equal(o *Spec) bool {
	a, b := s.Clone(), o.Clone()
	a.Normalize()
	b.Normalize()
	return a.Key == b.Key && a.Service == b.Service &&
		slices.Equal(a.Listeners, b.Listeners) &&
		slices.EqualFunc(a.Targets, b.Targets, Target.equal) &&
		a.HealthCheck == b.HealthCheck &&
		slices.Equal(a.SourceRanges, b.SourceRanges) &&
		slices.Equal(a.IPFamilies, b.IPFamilies) &&
		slices.Equal(a.Addresses, b.Addresses) &&
		a.SessionAffinity == b.SessionAffinity &&
		a.AffinityTimeoutSeconds == b.AffinityTimeoutSeconds &&
		mapsEqual(a.Options, b.Options)
}

// TargetsEqual reports whether s and o have the same target set.
func (s *Spec) TargetsEqual(o *Spec) bool {
	return targetsEqual(s.Targets, o.Targets)
}

func targetsEqual(x, y []Target) bool {
	if len(x) != len(y) {
		return false
	}
	a, b := slices.Clone(x), slices.Clone(y)
	cmpID := func(a, b Target) int { return strings.Compare(a.ProviderID, b.ProviderID) }
	slices.SortFunc(a, cmpID)
	slices.SortFunc(b, cmpID)
	return slices.EqualFunc(a, b, Target.equal)
}

func (b Target) equal(o Target) bool {
	return b.ProviderID == o.ProviderID && b.NodeName == o.NodeName && slices.Equal(b.Addresses, o.Addresses)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
