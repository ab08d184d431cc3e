package lb

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testService() *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "11111111-2222-3333-4444-555555555555"},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			IPFamilies: []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol},
			Ports: []v1.ServicePort{
				{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, NodePort: 30443, AppProtocol: ptr.To("https")},
				{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, NodePort: 30053},
			},
		},
	}
}

func testNode(name, providerID string, addrs ...v1.NodeAddress) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{ProviderID: providerID}, Status: v1.NodeStatus{Addresses: addrs}}
}

func TestDesired(t *testing.T) {
	schema, err := mergeSchemas(nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := testService()
	svc.Annotations = map[string]string{AnnotationSourceRanges: "10.0.0.0/8", AnnotationIPs: "2001:db8::5"}
	svc.Spec.LoadBalancerSourceRanges = []string{"192.168.1.7/24"} // wins over the annotation; host bits masked
	svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	svc.Spec.HealthCheckNodePort = 32000
	svc.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	nodes := []*v1.Node{
		testNode("b", "fake://b", v1.NodeAddress{Type: v1.NodeExternalIP, Address: "198.51.100.2"}),
		testNode("uninitialized", ""),
		testNode("a", "fake://a", v1.NodeAddress{Type: v1.NodeInternalIP, Address: "10.1.0.1"}, v1.NodeAddress{Type: v1.NodeExternalIP, Address: "198.51.100.1"}),
	}
	got, err := desired("prod", svc, nodes, schema)
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		Name:    "ccmkit-11111111222233334444555555555555",
		Key:     Key{Cluster: "prod", UID: svc.UID},
		Service: ServiceRef{Namespace: "shop", Name: "web", UID: svc.UID},
		Listeners: []Listener{
			{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, NodePort: 30443, AppProtocol: "https"},
			{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, NodePort: 30053},
		},
		Targets: []Target{
			{ProviderID: "fake://a", NodeName: "a", Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.1")}},
			{ProviderID: "fake://b", NodeName: "b", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.2")}},
		},
		HealthCheck:            HealthCheck{Port: 32000, Path: "/healthz"},
		SourceRanges:           []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")},
		IPFamilies:             []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol},
		Addresses:              []netip.Addr{netip.MustParseAddr("2001:db8::5")},
		SessionAffinity:        v1.ServiceAffinityClientIP,
		AffinityTimeoutSeconds: v1.DefaultClientIPServiceAffinitySeconds,
		Options:                map[string]string{AnnotationSourceRanges: "10.0.0.0/8", AnnotationIPs: "2001:db8::5"},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("desired (-want +got):\n%s", diff)
	}
	if !want.Equal(got) {
		t.Errorf("Equal(want, got) = false")
	}
}

func TestDesiredDefaults(t *testing.T) {
	schema, _ := mergeSchemas(nil)
	svc := testService()
	svc.Annotations = map[string]string{AnnotationSourceRanges: "10.0.0.0/8"}
	got, err := desired("c", svc, nil, schema)
	if err != nil {
		t.Fatal(err)
	}
	if got.HealthCheck != (HealthCheck{Port: KubeProxyHealthPort, Path: "/healthz"}) {
		t.Errorf("Cluster policy health check = %+v, want kube-proxy's", got.HealthCheck)
	}
	if len(got.SourceRanges) != 1 || got.SourceRanges[0].String() != "10.0.0.0/8" {
		t.Errorf("source ranges from the annotation = %v", got.SourceRanges)
	}
	if got.SessionAffinity != v1.ServiceAffinityNone || len(got.Targets) != 0 {
		t.Errorf("affinity %q targets %v", got.SessionAffinity, got.Targets)
	}
}

func TestDesiredRejects(t *testing.T) {
	schema, _ := mergeSchemas(nil)
	for name, mutate := range map[string]func(*v1.Service){
		"bad loadBalancerIP": func(s *v1.Service) { s.Spec.LoadBalancerIP = "not-an-ip" },
		"two IPv4 requested": func(s *v1.Service) {
			s.Spec.LoadBalancerIP = "192.0.2.1"
			s.Annotations = map[string]string{AnnotationIPs: "192.0.2.2"}
		},
		"bad source range":          func(s *v1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/40"} },
		"local without health port": func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal },
		"no ports":                  func(s *v1.Service) { s.Spec.Ports = nil },
		"no nodePort":               func(s *v1.Service) { s.Spec.Ports[0].NodePort = 0 },
	} {
		svc := testService()
		mutate(svc)
		if _, err := desired("c", svc, nil, schema); !errors.Is(err, ErrInvalidService) {
			t.Errorf("%s: error = %v, want ErrInvalidService", name, err)
		}
	}
	svc := testService()
	svc.Annotations = map[string]string{AnnotationIPs: "nope"}
	if _, err := desired("c", svc, nil, schema); !errors.Is(err, ErrInvalidAnnotation) {
		t.Errorf("bad annotation: error = %v, want ErrInvalidAnnotation", err)
	}
}

// FuzzDesired feeds arbitrary annotation values and spec strings: the result
// is a spec or an error, never a panic, and a spec is normalized.
func FuzzDesired(f *testing.F) {
	f.Add("10.0.0.0/8", "192.0.2.1", "192.0.2.1", "pool-a", "10.0.0.0/8")
	f.Add("", "2001:db8::1,192.0.2.9", "", "", "1.2.3.4/33")
	f.Add(",", "::ffff:1.2.3.4", "01.02.03.04", "x", "")
	schema, _ := mergeSchemas(nil)
	f.Fuzz(func(t *testing.T, ranges, ips, lbIP, pool, specRange string) {
		svc := testService()
		svc.Annotations = map[string]string{AnnotationSourceRanges: ranges, AnnotationIPs: ips, AnnotationPool: pool}
		svc.Spec.LoadBalancerIP = lbIP
		if specRange != "" {
			svc.Spec.LoadBalancerSourceRanges = []string{specRange}
		}
		s, err := desired("c", svc, nil, schema)
		if err != nil {
			return
		}
		n := s.Clone()
		n.Normalize()
		if !s.Equal(n) {
			t.Fatalf("desired spec is not normalized: %+v", s)
		}
		seen := map[bool]bool{}
		for _, a := range s.Addresses {
			if seen[a.Is4()] {
				t.Fatalf("two addresses of one family: %v", s.Addresses)
			}
			seen[a.Is4()] = true
		}
	})
}
