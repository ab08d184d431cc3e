package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	restclient "k8s.io/client-go/rest"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"

	"github.com/ccmkit/ccmkit/framework"
)

// ProviderFixture is what [RunProvider] checks: a Provider as a command
// would build it, over a cloud (or a stand-in) that holds the Nodes'
// instances.
type ProviderFixture struct {
	// Provider is the provider under test, fresh for each case (the suite
	// calls Initialize and SetInformers on it, as the manager does).
	Provider *framework.Provider
	// ClusterName is --cluster-name.
	ClusterName string
	// Nodes are at least two Nodes whose instances the cloud holds, as the
	// kubelet registers them: a name, a UID and addresses; a providerID is
	// not needed. The load-balancer cases use them as targets, so each
	// should be reachable by the cloud (or the cloud should not care).
	Nodes []*v1.Node
	// MissingNode is a Node whose instance the cloud does not hold.
	MissingNode *v1.Node
	// ServicePort and NodePort are the load-balancer cases' Service port
	// (default 80 and 30080).
	ServicePort, NodePort int32
	// Settle lets time pass between two polls (a fake clock's step, or a
	// real wait); PollLimit bounds the polls of a wait (default 60).
	Settle    func(ctx context.Context) error
	PollLimit int
}

// providerSuite drives providerCases; RunProvider gives each case two
// minutes.
var providerSuite = suite[ProviderFixture]{validate: checkProviderFixture, cases: providerCases, runTimeout: 2 * time.Minute}

// needsBlock skips a case when block reports that the provider was built
// without it.
func needsBlock[B any](block func(*framework.Provider) (B, bool)) func(ProviderFixture) string {
	return func(f ProviderFixture) string {
		if _, ok := block(f.Provider); !ok {
			return "the provider has no such block"
		}
		return ""
	}
}

var providerCases = []conformanceCase[ProviderFixture]{
	{
		name: "interface",
		rule: "ProviderName is set and HasClusterID is true; InstancesV2 is implemented and Instances (v1) and Zones are not, so the controllers use InstancesV2; Routes and LoadBalancer report what the provider was built with",
		check: func(ctx context.Context, f ProviderFixture) error {
			p := f.Provider
			var errs []error
			if p.ProviderName() == "" {
				errs = append(errs, errors.New("ProviderName is empty"))
			}
			if !p.HasClusterID() {
				errs = append(errs, errors.New("HasClusterID is false: upstream warns and the blocks tag nothing"))
			}
			if _, ok := p.InstancesV2(); !ok {
				errs = append(errs, errors.New("the provider does not implement InstancesV2"))
			}
			if _, ok := p.Instances(); ok {
				errs = append(errs, errors.New("the provider implements Instances (v1): the node controllers would use it instead of InstancesV2"))
			}
			if _, ok := p.Zones(); ok {
				errs = append(errs, errors.New("the provider implements Zones: InstancesV2 carries zones"))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "instance-metadata",
		rule: "InstanceMetadata of each known Node (no providerID yet, as at initialization) is non-nil with a providerID of the provider's scheme and the instance's addresses; InstanceExists is (true, nil) and InstanceShutdown (false, nil); looked up again by that providerID it agrees",
		skip: needsBlock((*framework.Provider).InstancesV2),
		check: func(ctx context.Context, f ProviderFixture) error {
			i, _ := f.Provider.InstancesV2()
			var errs []error
			for _, n := range f.Nodes {
				node := n.DeepCopy()
				md, err := i.InstanceMetadata(ctx, node)
				switch {
				case err != nil:
					errs = append(errs, fmt.Errorf("InstanceMetadata(%s): %w", node.Name, err))
					continue
				case md == nil:
					errs = append(errs, fmt.Errorf("InstanceMetadata(%s) = (nil, nil): the address refresh dereferences it", node.Name))
					continue
				case !strings.HasPrefix(md.ProviderID, f.Provider.ProviderName()+"://"):
					errs = append(errs, fmt.Errorf("InstanceMetadata(%s).ProviderID = %q, want the scheme %s://", node.Name, md.ProviderID, f.Provider.ProviderName()))
				case len(md.NodeAddresses) == 0:
					errs = append(errs, fmt.Errorf("InstanceMetadata(%s) has no addresses", node.Name))
				}
				for _, call := range []struct {
					name string
					want bool
					fn   func(context.Context, *v1.Node) (bool, error)
				}{{"InstanceExists", true, i.InstanceExists}, {"InstanceShutdown", false, i.InstanceShutdown}} {
					if got, err := call.fn(ctx, node); err != nil || got != call.want {
						errs = append(errs, fmt.Errorf("%s(%s) = (%v, %v), want (%v, nil)", call.name, node.Name, got, err, call.want))
					}
				}
				node.Spec.ProviderID = md.ProviderID
				again, err := i.InstanceMetadata(ctx, node)
				if err != nil || again == nil || again.ProviderID != md.ProviderID {
					errs = append(errs, fmt.Errorf("InstanceMetadata(%s) by providerID %s = %+v, %v: want the same instance", node.Name, md.ProviderID, again, err))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "instance-missing",
		rule: "for a Node whose instance the cloud does not hold, InstanceExists is (false, nil), so the node-lifecycle controller deletes the Node (an error would skip the deletion), and InstanceMetadata returns an error, never (nil, nil)",
		skip: needsBlock((*framework.Provider).InstancesV2),
		check: func(ctx context.Context, f ProviderFixture) error {
			if f.MissingNode == nil {
				return nil
			}
			i, _ := f.Provider.InstancesV2()
			var errs []error
			if ok, err := i.InstanceExists(ctx, f.MissingNode.DeepCopy()); ok || err != nil {
				errs = append(errs, fmt.Errorf("InstanceExists(%s) = (%v, %v), want (false, nil)", f.MissingNode.Name, ok, err))
			}
			if md, err := i.InstanceMetadata(ctx, f.MissingNode.DeepCopy()); err == nil {
				errs = append(errs, fmt.Errorf("InstanceMetadata(%s) = (%+v, nil), want an error", f.MissingNode.Name, md))
			}
			return errors.Join(errs...)
		},
	},
	{
		name:  "load-balancer-lifecycle",
		rule:  "for a LoadBalancer Service and its Nodes, as the service controller calls them: GetLoadBalancer reports none before; EnsureLoadBalancer, retried after each api.RetryError, returns an ingress IP with an ipMode on every entry (a missing ipMode is a diff on every sync); GetLoadBalancer then reports it with the same status; a second EnsureLoadBalancer returns an equal status (a re-sync patches nothing); UpdateLoadBalancer with one Node less succeeds; EnsureLoadBalancerDeleted, retried, succeeds and GetLoadBalancer then reports none",
		skip:  needsBlock((*framework.Provider).LoadBalancer),
		check: checkLoadBalancerLifecycle,
	},
	{
		name:  "routes-lifecycle",
		rule:  "through Provider.Routes, as the route controller calls it: CreateRoute of each Node's pod CIDR (name hint: the Node UID) then ListRoutes lists each with its target Node and CIDR (eventually); DeleteRoute of each then ListRoutes lists none of them",
		skip:  needsBlock((*framework.Provider).Routes),
		check: checkRoutesLifecycle,
	},
}

// clientBuilder hands the same client to every controller identity.
type clientBuilder struct{ client kubernetes.Interface }

func (b clientBuilder) Config(string) (*restclient.Config, error) { return &restclient.Config{}, nil }
func (b clientBuilder) ConfigOrDie(string) *restclient.Config     { return &restclient.Config{} }
func (b clientBuilder) Client(string) (kubernetes.Interface, error) {
	return b.client, nil
}
func (b clientBuilder) ClientOrDie(string) kubernetes.Interface { return b.client }

func (f ProviderFixture) wait(ctx context.Context, what string, try func() (bool, error)) error {
	limit := f.PollLimit
	if limit <= 0 {
		limit = 60
	}
	var last error
	for i := range limit {
		if i > 0 && f.Settle != nil {
			if err := f.Settle(ctx); err != nil {
				return fmt.Errorf("waiting for %s: settle: %w", what, err)
			}
		}
		done, err := try()
		if done {
			return err
		}
		last = err
	}
	return fmt.Errorf("waiting for %s: not done after %d polls (last: %v)", what, limit, last)
}

func (f ProviderFixture) service() *v1.Service {
	port, nodePort := f.ServicePort, f.NodePort
	if port == 0 {
		port = 80
	}
	if nodePort == 0 {
		nodePort = 30080
	}
	uid := uuid.NewUUID()
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "conformance", Name: "lb-" + string(uid)[:8], UID: uid},
		Spec: v1.ServiceSpec{
			Type:                  v1.ServiceTypeLoadBalancer,
			Ports:                 []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: port, NodePort: nodePort}},
			IPFamilies:            []v1.IPFamily{v1.IPv4Protocol},
			SessionAffinity:       v1.ServiceAffinityNone,
			ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
		},
	}
}

// initialize hooks the provider to a fake clientset holding objs and its
// synced informers, as the manager does before starting controllers.
func initialize(ctx context.Context, p *framework.Provider, objs ...*v1.Service) (kubernetes.Interface, error) {
	var list []runtime.Object
	for _, o := range objs {
		list = append(list, o)
	}
	client := fake.NewClientset(list...)
	p.Initialize(clientBuilder{client}, ctx.Done())
	f := informers.NewSharedInformerFactory(client, 0)
	p.SetInformers(f)
	f.Core().V1().Services().Informer()
	f.Core().V1().Nodes().Informer()
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	return client, nil
}

func checkLoadBalancerLifecycle(ctx context.Context, f ProviderFixture) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	svc := f.service()
	if _, err := initialize(ctx, f.Provider, svc); err != nil {
		return err
	}
	lbi, _ := f.Provider.LoadBalancer()
	cluster := f.ClusterName
	nodes := providerNodes(ctx, f)

	if name := lbi.GetLoadBalancerName(ctx, cluster, svc); name == "" || name != lbi.GetLoadBalancerName(ctx, cluster, svc.DeepCopy()) {
		return fmt.Errorf("GetLoadBalancerName = %q: want a stable, non-empty name", name)
	}
	if st, exists, err := lbi.GetLoadBalancer(ctx, cluster, svc); err != nil || exists {
		return fmt.Errorf("GetLoadBalancer before Ensure = (%+v, %v, %v), want (_, false, nil)", st, exists, err)
	}
	ensure := func() (*v1.LoadBalancerStatus, error) {
		var st *v1.LoadBalancerStatus
		err := f.wait(ctx, "EnsureLoadBalancer", func() (bool, error) {
			var err error
			st, err = lbi.EnsureLoadBalancer(ctx, cluster, svc, nodes)
			var re *api.RetryError
			if errors.As(err, &re) {
				return false, err
			}
			return true, err
		})
		return st, err
	}
	st, err := ensure()
	if err != nil {
		return fmt.Errorf("EnsureLoadBalancer: %w", err)
	}
	var errs []error
	if st == nil || len(st.Ingress) == 0 {
		return fmt.Errorf("EnsureLoadBalancer returned no ingress: %+v", st)
	}
	for _, in := range st.Ingress {
		if _, err := netip.ParseAddr(in.IP); err != nil && in.Hostname == "" {
			errs = append(errs, fmt.Errorf("ingress %+v has neither an IP nor a hostname", in))
		}
		if in.IP != "" && in.IPMode == nil {
			errs = append(errs, fmt.Errorf("ingress %s has no ipMode: the API server defaults it to VIP and every sync sees a diff", in.IP))
		}
	}
	got, exists, err := lbi.GetLoadBalancer(ctx, cluster, svc)
	if err != nil || !exists || !equality.Semantic.DeepEqual(got, st) {
		errs = append(errs, fmt.Errorf("GetLoadBalancer after Ensure = (%+v, %v, %v), want (%+v, true, nil)", got, exists, err, st))
	}
	again, err := ensure()
	if err != nil || !equality.Semantic.DeepEqual(again, st) {
		errs = append(errs, fmt.Errorf("a second EnsureLoadBalancer = (%+v, %v), want the same status %+v: a re-sync would patch the Service", again, err, st))
	}
	if err := lbi.UpdateLoadBalancer(ctx, cluster, svc, nodes[:len(nodes)-1]); err != nil {
		errs = append(errs, fmt.Errorf("UpdateLoadBalancer with %d nodes: %w", len(nodes)-1, err))
	}
	err = f.wait(ctx, "EnsureLoadBalancerDeleted", func() (bool, error) {
		err := lbi.EnsureLoadBalancerDeleted(ctx, cluster, svc)
		return err == nil, err
	})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("EnsureLoadBalancerDeleted: %w", err))...)
	}
	if st, exists, err := lbi.GetLoadBalancer(ctx, cluster, svc); err != nil || exists {
		errs = append(errs, fmt.Errorf("GetLoadBalancer after delete = (%+v, %v, %v), want (_, false, nil)", st, exists, err))
	}
	return errors.Join(errs...)
}

// providerNodes returns the fixture's Nodes with the providerIDs
// InstancesV2 gives them (initialized Nodes, as the service controller
// sees them), or as they are without InstancesV2.
func providerNodes(ctx context.Context, f ProviderFixture) []*v1.Node {
	out := make([]*v1.Node, 0, len(f.Nodes))
	i, ok := f.Provider.InstancesV2()
	for _, n := range f.Nodes {
		node := n.DeepCopy()
		if ok && node.Spec.ProviderID == "" {
			if md, err := i.InstanceMetadata(ctx, node); err == nil && md != nil {
				node.Spec.ProviderID = md.ProviderID
			}
		}
		out = append(out, node)
	}
	return out
}

func checkRoutesLifecycle(ctx context.Context, f ProviderFixture) error {
	r, _ := f.Provider.Routes()
	cluster := f.ClusterName
	want := map[types.NodeName]string{}
	var errs []error
	for i, n := range f.Nodes {
		cidr := fmt.Sprintf("10.250.%d.0/24", i)
		want[types.NodeName(n.Name)] = cidr
		rt := &cloudprovider.Route{TargetNode: types.NodeName(n.Name), DestinationCIDR: cidr, TargetNodeAddresses: n.Status.Addresses}
		if err := r.CreateRoute(ctx, cluster, string(n.UID), rt); err != nil {
			errs = append(errs, fmt.Errorf("CreateRoute(%s, %s): %w", n.Name, cidr, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var listed []*cloudprovider.Route
	err := f.wait(ctx, "ListRoutes to list the created routes", func() (bool, error) {
		var err error
		listed, err = r.ListRoutes(ctx, cluster)
		if err != nil {
			return false, err
		}
		found := 0
		for _, l := range listed {
			if c, ok := want[l.TargetNode]; ok && c == l.DestinationCIDR {
				found++
			}
		}
		if found < len(want) {
			return false, fmt.Errorf("%d of %d routes listed", found, len(want))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, l := range listed {
		if _, ok := want[l.TargetNode]; !ok {
			continue
		}
		if err := r.DeleteRoute(ctx, cluster, l); err != nil {
			errs = append(errs, fmt.Errorf("DeleteRoute(%s): %w", l.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return f.wait(ctx, "ListRoutes to list none of the deleted routes", func() (bool, error) {
		listed, err := r.ListRoutes(ctx, cluster)
		if err != nil {
			return false, err
		}
		for _, l := range listed {
			if c, ok := want[l.TargetNode]; ok && c == l.DestinationCIDR {
				return false, fmt.Errorf("route %s (%s) still listed", l.Name, c)
			}
		}
		return true, nil
	})
}

func checkProviderFixture(f ProviderFixture) error {
	var errs []error
	if f.Provider == nil {
		errs = append(errs, errors.New("conformance: ProviderFixture.Provider is nil"))
	}
	if f.ClusterName == "" {
		errs = append(errs, errors.New("conformance: ProviderFixture.ClusterName is empty"))
	}
	if len(f.Nodes) < 2 {
		errs = append(errs, errors.New("conformance: ProviderFixture needs at least two Nodes"))
	}
	for _, n := range f.Nodes {
		if n == nil || n.Name == "" || n.UID == "" {
			errs = append(errs, errors.New("conformance: every fixture Node needs a name and a UID"))
			break
		}
	}
	return errors.Join(errs...)
}

// TestProvider runs every case against a fixture from newFixture (one per
// case, since a Provider is initialized once) and returns every violation
// joined, each prefixed with the case name and rule.
func TestProvider(ctx context.Context, newFixture func() ProviderFixture) error {
	return providerSuite.test(ctx, newFixture)
}

// RunProvider runs every case as a subtest with a fresh fixture: a whole
// Provider, its blocks together, called the way upstream's controllers call
// them. Cases for blocks the provider was not built with are skipped.
func RunProvider(t *testing.T, newFixture func(t *testing.T) ProviderFixture) {
	t.Helper()
	providerSuite.run(t, newFixture)
}
