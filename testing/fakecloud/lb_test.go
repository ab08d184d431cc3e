package fakecloud_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

const cluster = "test-cluster"

func lbSpec(uid types.UID) *lb.Spec {
	return &lb.Spec{
		Name:    lb.Name(uid),
		Key:     lb.Key{Cluster: cluster, UID: uid},
		Service: lb.ServiceRef{Namespace: "default", Name: "web", UID: uid},
		Listeners: []lb.Listener{
			{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, NodePort: 30443},
			{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080},
		},
		Targets: []lb.Target{
			{ProviderID: "fake:///zone-a/i-2", NodeName: "node-2", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
			{ProviderID: "fake:///zone-a/i-1", NodeName: "node-1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		},
		HealthCheck: lb.HealthCheck{Port: lb.KubeProxyHealthPort, Path: "/healthz"},
		IPFamilies:  []v1.IPFamily{v1.IPv4Protocol},
		Options:     map[string]string{"example.com/lb-type": "nlb", "example.com/empty": ""},
	}
}

func newLBCloud(t *testing.T, opts fakecloud.Options) (*fakecloud.Cloud, *fakecloud.LBBackend, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	opts.Clock = clk
	c := fakecloud.New(opts)
	return c, c.LoadBalancers(), clk
}

func TestLBCreateFindRoundTrip(t *testing.T) {
	c, b, _ := newLBCloud(t, fakecloud.Options{})
	ctx := t.Context()
	spec := lbSpec("uid-1")
	created, err := b.Create(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, "lb-1", created.ID)
	assert.Equal(t, lb.StatusActive, created.Status, "synchronous by default")
	assert.Equal(t, []lb.Ingress{{IP: netip.MustParseAddr("203.0.113.1"), IPMode: v1.LoadBalancerIPModeVIP}}, created.Ingress)

	spec.Options["example.com/lb-type"] = "mutated after the call"
	spec.Targets[0].Addresses[0] = netip.MustParseAddr("10.9.9.9")
	got, err := b.Find(ctx, lb.Key{Cluster: cluster, UID: "uid-1"})
	require.NoError(t, err)
	if d := cmp.Diff(*lbSpec("uid-1"), got.Spec, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
		t.Errorf("stored spec is a deep copy reported back exactly (-want +got):\n%s", d)
	}
	got.Spec.Options["x"] = "y"
	again, ok := c.LoadBalancer(spec.Name)
	require.True(t, ok)
	assert.NotContains(t, again.Spec.Options, "x", "results are copies")

	_, err = b.Find(ctx, lb.Key{Cluster: "other", UID: "uid-1"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound, "the key is the cluster and the UID")
	lbFound, err := b.Find(ctx, lb.Key{})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	assert.Nil(t, lbFound)
	assert.Equal(t, 4, c.Count(fakecloud.OpFindLoadBalancer)+c.Count(fakecloud.OpCreateLoadBalancer))
}

func TestLBCreateIsIdempotentOnName(t *testing.T) {
	c, b, clk := newLBCloud(t, fakecloud.Options{ReadLag: 2 * time.Second})
	ctx := t.Context()
	first, err := b.Create(ctx, lbSpec("uid-1"))
	require.NoError(t, err)
	_, err = b.Find(ctx, first.Spec.Key)
	require.ErrorIs(t, err, cloudcall.ErrNotFound, "reads lag the create")

	other := lbSpec("uid-1")
	other.Key.Cluster = "another-cluster"
	got, err := b.Create(ctx, other)
	assert.Nil(t, got)
	require.ErrorIs(t, err, lb.ErrExists)
	var exists *lb.ExistsError
	require.ErrorAs(t, err, &exists)
	assert.Equal(t, first.ID, exists.LoadBalancer.ID)
	assert.Equal(t, lb.Key{Cluster: cluster, UID: "uid-1"}, exists.LoadBalancer.Spec.Key, "the error carries the stored key")
	assert.Len(t, c.LoadBalancerList(), 1, "names are unique in the current state, whatever the read lag")
	assert.Equal(t, 2, c.Count(fakecloud.OpCreateLoadBalancer))

	clk.Step(2 * time.Second)
	found, err := b.Find(ctx, first.Spec.Key)
	require.NoError(t, err)
	assert.Equal(t, first.ID, found.ID)
}

func TestLBProvisioningPolls(t *testing.T) {
	_, b, _ := newLBCloud(t, fakecloud.Options{LBProvisionPolls: 2})
	ctx := t.Context()
	created, err := b.Create(ctx, lbSpec("uid-1"))
	require.NoError(t, err)
	assert.Equal(t, lb.StatusPending, created.Status)
	assert.NotEmpty(t, created.Message)
	var seen []lb.Status
	for range 4 {
		got, err := b.Find(ctx, created.Spec.Key)
		require.NoError(t, err)
		seen = append(seen, got.Status)
	}
	assert.Equal(t, []lb.Status{lb.StatusPending, lb.StatusPending, lb.StatusActive, lb.StatusActive}, seen, "Pending for two Finds")

	// An update provisions again; it is accepted while Pending too.
	updated, err := b.UpdateTargets(ctx, created, nil)
	require.NoError(t, err)
	assert.Equal(t, lb.StatusPending, updated.Status)
	spec := lbSpec("uid-1")
	spec.SourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	updated, err = b.Update(ctx, updated, spec)
	require.NoError(t, err)
	assert.Equal(t, lb.StatusPending, updated.Status)
	for range 2 {
		got, err := b.Find(ctx, created.Spec.Key)
		require.NoError(t, err)
		assert.Equal(t, lb.StatusPending, got.Status)
	}
	got, err := b.Find(ctx, created.Spec.Key)
	require.NoError(t, err)
	assert.Equal(t, lb.StatusActive, got.Status)
	assert.True(t, got.Spec.Equal(spec))
}

func TestLBProvisioningTimeAndHold(t *testing.T) {
	c, b, clk := newLBCloud(t, fakecloud.Options{LBProvisionTime: 5 * time.Second})
	ctx := t.Context()
	find := func(key lb.Key) lb.Status {
		t.Helper()
		got, err := b.Find(ctx, key)
		require.NoError(t, err)
		return got.Status
	}
	spec := lbSpec("uid-1")
	release := c.HoldLoadBalancer(spec.Name) // before it exists
	_, err := b.Create(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, lb.StatusPending, find(spec.Key))
	clk.Step(5 * time.Second)
	assert.Equal(t, lb.StatusPending, find(spec.Key), "held")
	release()
	release() // idempotent
	assert.Equal(t, lb.StatusActive, find(spec.Key), "its provisioning time has passed")

	all := c.HoldLoadBalancer("")
	assert.Equal(t, lb.StatusPending, find(spec.Key), "an empty name holds every load balancer, Active ones too")
	all()
	assert.Equal(t, lb.StatusActive, find(spec.Key))

	c.SetLBProvisioning(1, time.Second)
	updated, err := b.UpdateTargets(ctx, &lb.LoadBalancer{ID: "lb-1"}, spec.Targets[:1])
	require.NoError(t, err)
	assert.Equal(t, lb.StatusPending, updated.Status)
	assert.Equal(t, lb.StatusPending, find(spec.Key), "one poll")
	assert.Equal(t, lb.StatusPending, find(spec.Key), "and a second on the clock")
	clk.Step(time.Second)
	assert.Equal(t, lb.StatusActive, find(spec.Key))

	require.NoError(t, c.FailLoadBalancer(spec.Name, "no capacity"))
	got, err := b.Find(ctx, spec.Key)
	require.NoError(t, err)
	assert.Equal(t, lb.StatusFailed, got.Status)
	assert.Equal(t, "no capacity", got.Message)
	require.ErrorIs(t, c.FailLoadBalancer("nope", ""), cloudcall.ErrNotFound)
}

func TestLBDeleteAsync(t *testing.T) {
	c, b, clk := newLBCloud(t, fakecloud.Options{LBDeleteTime: 3 * time.Second})
	ctx := t.Context()
	spec := lbSpec("uid-1")
	created, err := b.Create(ctx, spec)
	require.NoError(t, err)
	require.NoError(t, b.Delete(ctx, created))
	got, err := b.Find(ctx, spec.Key)
	require.NoError(t, err)
	assert.Equal(t, lb.StatusDeleting, got.Status)
	require.NoError(t, b.Delete(ctx, created), "deleting again is not an error")
	_, err = b.Update(ctx, created, spec)
	assert.Equal(t, cloudcall.ClassTransient, cloudcall.Classify(err), "update while deleting: %v", err)
	_, err = b.Create(ctx, spec)
	require.ErrorIs(t, err, lb.ErrExists, "the name is held until the deletion completes")

	clk.Step(3 * time.Second)
	_, err = b.Find(ctx, spec.Key)
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	_, ok := c.LoadBalancer(spec.Name)
	assert.False(t, ok)
	require.NoError(t, b.Delete(ctx, created), "deleting a missing load balancer is not an error")
	_, err = b.Update(ctx, created, spec)
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	_, err = b.UpdateTargets(ctx, created, nil)
	require.ErrorIs(t, err, cloudcall.ErrNotFound)

	again, err := b.Create(ctx, spec)
	require.NoError(t, err, "the name is free again")
	assert.Equal(t, "lb-2", again.ID)
	assert.Equal(t, netip.MustParseAddr("203.0.113.2"), again.Ingress[0].IP, "addresses are not reused at once")

	c.SetLBDeleteTime(0)
	require.NoError(t, b.Delete(ctx, again))
	assert.Empty(t, c.LoadBalancerList(), "synchronous deletion")
}

func TestLBAddresses(t *testing.T) {
	c, b, _ := newLBCloud(t, fakecloud.Options{LBIPMode: v1.LoadBalancerIPModeProxy})
	ctx := t.Context()
	dual := lbSpec("uid-1")
	dual.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}
	got, err := b.Create(ctx, dual)
	require.NoError(t, err)
	assert.Equal(t, []lb.Ingress{
		{IP: netip.MustParseAddr("2001:db8::1"), IPMode: v1.LoadBalancerIPModeProxy},
		{IP: netip.MustParseAddr("203.0.113.1"), IPMode: v1.LoadBalancerIPModeProxy},
	}, got.Ingress, "one per family, in IPFamilies order")

	asked := lbSpec("uid-2")
	asked.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	asked.Addresses = []netip.Addr{netip.MustParseAddr("2001:db8::99"), netip.MustParseAddr("203.0.113.2")}
	got, err = b.Create(ctx, asked)
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("2001:db8::99")},
		[]netip.Addr{got.Ingress[0].IP, got.Ingress[1].IP}, "requested addresses, in IPFamilies order")
	assert.Equal(t, asked.Addresses, got.Spec.Addresses, "the spec is stored as given")

	auto, err := b.Create(ctx, lbSpec("uid-3"))
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("203.0.113.3"), auto.Ingress[0].IP, "never an address another load balancer holds")

	taken := lbSpec("uid-4")
	taken.Addresses = []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	_, err = b.Create(ctx, taken)
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
	require.ErrorContains(t, err, "203.0.113.1")
	_, ok := c.LoadBalancer(taken.Name)
	assert.False(t, ok, "a failed create makes nothing")

	// Going single-stack on update keeps the family's address.
	single := lbSpec("uid-1")
	single.IPFamilies = []v1.IPFamily{v1.IPv4Protocol}
	cur, _ := c.LoadBalancer(dual.Name)
	got, err = b.Update(ctx, cur, single)
	require.NoError(t, err)
	assert.Equal(t, []lb.Ingress{{IP: netip.MustParseAddr("203.0.113.1"), IPMode: v1.LoadBalancerIPModeProxy}}, got.Ingress)
	v6 := lbSpec("uid-5")
	v6.IPFamilies = []v1.IPFamily{v1.IPv6Protocol}
	got, err = b.Create(ctx, v6)
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("2001:db8::2"), got.Ingress[0].IP)
}

func TestLBAddressRangeExhausted(t *testing.T) {
	c, b, _ := newLBCloud(t, fakecloud.Options{})
	ctx := t.Context()
	for i := range 254 {
		_, err := b.Create(ctx, lbSpec(types.UID(rune('a'+i/26))+types.UID(rune('a'+i%26))))
		require.NoError(t, err)
	}
	_, err := b.Create(ctx, lbSpec("full"))
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
	require.NoError(t, b.Delete(ctx, &lb.LoadBalancer{ID: "lb-7"}))
	got, err := b.Create(ctx, lbSpec("full"))
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("203.0.113.7"), got.Ingress[0].IP, "the range wraps to the released address")
	assert.Len(t, c.LoadBalancerList(), 254)
}

func TestLBQuotas(t *testing.T) {
	c, b, _ := newLBCloud(t, fakecloud.Options{MaxLoadBalancers: 1, MaxListeners: 2})
	ctx := t.Context()
	spec := lbSpec("uid-1")
	spec.Listeners = append(spec.Listeners, lb.Listener{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, NodePort: 30053})
	_, err := b.Create(ctx, spec)
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
	require.ErrorContains(t, err, "MaxListeners")

	created, err := b.Create(ctx, lbSpec("uid-1"))
	require.NoError(t, err)
	_, err = b.Update(ctx, created, spec)
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
	require.ErrorContains(t, err, "MaxListeners")

	_, err = b.Create(ctx, lbSpec("uid-2"))
	require.ErrorIs(t, err, cloudcall.ErrPermanent)
	require.ErrorContains(t, err, "MaxLoadBalancers")

	c.SetLBQuotas(0, 0)
	_, err = b.Update(ctx, created, spec)
	require.NoError(t, err)
	_, err = b.Create(ctx, lbSpec("uid-2"))
	require.NoError(t, err)
}

func TestLBReadLagAndListLag(t *testing.T) {
	c, b, clk := newLBCloud(t, fakecloud.Options{ReadLag: 2 * time.Second})
	ctx := t.Context()
	names := func() []string {
		t.Helper()
		list, err := b.List(ctx, cluster)
		require.NoError(t, err)
		var out []string
		for _, l := range list {
			out = append(out, l.Spec.Name)
		}
		return out
	}
	a, err := b.Create(ctx, lbSpec("uid-b"))
	require.NoError(t, err)
	_, err = b.Create(ctx, lbSpec("uid-a"))
	require.NoError(t, err)
	assert.Equal(t, []string{lb.Name("uid-a"), lb.Name("uid-b")}, names(), "List reads its own writes, sorted by name")
	_, err = b.Find(ctx, a.Spec.Key)
	require.ErrorIs(t, err, cloudcall.ErrNotFound, "Find lags")
	clk.Step(2 * time.Second)
	_, err = b.Find(ctx, a.Spec.Key)
	require.NoError(t, err)

	require.NoError(t, b.Delete(ctx, a))
	assert.Equal(t, []string{lb.Name("uid-a")}, names())
	got, err := b.Find(ctx, a.Spec.Key)
	require.NoError(t, err, "a lagged Find still sees the deleted load balancer")
	assert.Equal(t, a.ID, got.ID)
	clk.Step(2 * time.Second)
	_, err = b.Find(ctx, a.Spec.Key)
	require.ErrorIs(t, err, cloudcall.ErrNotFound)

	c.SetListLag(time.Second)
	_, err = b.Create(ctx, lbSpec("uid-c"))
	require.NoError(t, err)
	assert.Equal(t, []string{lb.Name("uid-a")}, names(), "List lags when told to")
	clk.Step(time.Second)
	assert.Equal(t, []string{lb.Name("uid-a"), lb.Name("uid-c")}, names())
}

func TestLBOwnershipAndLegacy(t *testing.T) {
	c, b, _ := newLBCloud(t, fakecloud.Options{})
	ctx := t.Context()
	foreign := lb.LoadBalancer{Spec: *lbSpec("uid-f"), Status: lb.StatusActive}
	foreign.Spec.Key.Cluster = "another-cluster"
	require.NoError(t, c.AddLoadBalancer(foreign))
	legacy := lb.LoadBalancer{ID: "legacy-1", Spec: lb.Spec{Name: "auidl", IPFamilies: []v1.IPFamily{v1.IPv4Protocol}}, Status: lb.StatusActive,
		Ingress: []lb.Ingress{{IP: netip.MustParseAddr("198.51.100.7")}}}
	require.NoError(t, c.AddLoadBalancer(legacy))
	require.Error(t, c.AddLoadBalancer(legacy), "duplicate name")
	require.Error(t, c.AddLoadBalancer(lb.LoadBalancer{ID: "legacy-1", Spec: lb.Spec{Name: "other"}}), "duplicate ID")
	require.Error(t, c.AddLoadBalancer(lb.LoadBalancer{Spec: lb.Spec{Name: "x"}, Status: lb.StatusDeleting}))
	require.NoError(t, c.AddLoadBalancer(lb.LoadBalancer{ID: "lb-2", Spec: lb.Spec{Name: "seeded"}}))
	ours, err := b.Create(ctx, lbSpec("uid-o"))
	require.NoError(t, err)
	assert.Equal(t, "lb-3", ours.ID, "assigned IDs skip those in use")

	list, err := b.List(ctx, cluster)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, ours.ID, list[0].ID)
	list, err = b.List(ctx, "another-cluster")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "another-cluster", list[0].Spec.Key.Cluster)
	list, err = b.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, list, "a zero key belongs to no cluster")
	assert.NotNil(t, list)
	assert.Len(t, c.LoadBalancerList(), 4)

	_, err = b.Find(ctx, lb.Key{Cluster: cluster, UID: "uid-f"})
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	_, err = b.Create(ctx, &lb.Spec{Name: lb.Name("uid-f"), Key: lb.Key{Cluster: cluster, UID: "uid-f"}})
	var exists *lb.ExistsError
	require.ErrorAs(t, err, &exists)
	assert.Equal(t, "another-cluster", exists.LoadBalancer.Spec.Key.Cluster)

	got, err := b.FindLegacy(ctx, &v1.Service{}, "auidl")
	require.NoError(t, err)
	assert.Equal(t, "legacy-1", got.ID)
	assert.True(t, got.Spec.Key.IsZero())
	assert.Equal(t, netip.MustParseAddr("198.51.100.7"), got.Ingress[0].IP)
	_, err = b.FindLegacy(ctx, &v1.Service{}, "amissing")
	require.ErrorIs(t, err, cloudcall.ErrNotFound)

	// Adoption: Update writes the key and keeps the name.
	adopt := lbSpec("uid-l")
	adopt.Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.7")}
	adopted, err := b.Update(ctx, got, adopt)
	require.NoError(t, err)
	assert.Equal(t, "auidl", adopted.Spec.Name)
	found, err := b.Find(ctx, adopt.Key)
	require.NoError(t, err)
	assert.Equal(t, "legacy-1", found.ID)
	assert.Equal(t, netip.MustParseAddr("198.51.100.7"), found.Ingress[0].IP)
}

func TestLBFaultsAndCrashPoints(t *testing.T) {
	c, b, _ := newLBCloud(t, fakecloud.Options{})
	ctx := t.Context()
	spec := lbSpec("uid-1")
	c.Inject(fakecloud.OpCreateLoadBalancer, fakecloud.Fault{RetryAfter: 7 * time.Second, Times: 1})
	got, err := b.Create(ctx, spec)
	assert.Nil(t, got)
	ra, ok := cloudcall.RetryAfter(err)
	require.True(t, ok)
	assert.Equal(t, 7*time.Second, ra)
	assert.Empty(t, c.LoadBalancerList(), "a fault before the effect makes nothing")

	reset := cloudcall.Transient(errors.New("connection reset"))
	c.Inject(fakecloud.OpCreateLoadBalancer, fakecloud.Fault{Err: reset, After: true, Times: 1})
	_, err = b.Create(ctx, spec)
	require.ErrorIs(t, err, reset)
	assert.Len(t, c.LoadBalancerList(), 1, "a crash point after the effect: the load balancer exists")
	_, err = b.Create(ctx, spec)
	require.ErrorIs(t, err, lb.ErrExists, "the retry finds it by name")

	c.Inject(fakecloud.OpFindLoadBalancer, fakecloud.Fault{Err: cloudcall.NotFound(nil), Times: 1})
	_, err = b.Find(ctx, spec.Key)
	require.ErrorIs(t, err, cloudcall.ErrNotFound)
	_, err = b.Find(ctx, spec.Key)
	require.NoError(t, err)

	calls := c.Calls()
	require.Len(t, calls, 5)
	assert.Equal(t, fakecloud.OpCreateLoadBalancer, calls[0].Op)
	assert.Equal(t, spec.Name, calls[0].Arg)
	assert.Equal(t, spec.Key.String(), calls[4].Arg)
	assert.Equal(t, 3, c.Count(fakecloud.OpCreateLoadBalancer))
}
