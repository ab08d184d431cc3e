package framework_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func controllerCheck(t *testing.T, p *framework.Provider, name string, args ...string) error {
	t.Helper()
	cfg, err := framework.ParseConfig(framework.CommandOptions{Provider: p}, args)
	require.NoError(t, err)
	c, ok := cfg.Controller(name)
	require.True(t, ok, "no %s in the table", name)
	return c.Check(cfg)
}

func TestWithLoadBalancers(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	p, err := framework.NewBuilder("fake").WithLoadBalancers(cloud.LoadBalancers(), lb.Options{}).Build()
	require.NoError(t, err)
	got, ok := p.LoadBalancer()
	require.True(t, ok)
	assert.Same(t, p.LoadBalancerReconciler(), got)
	assert.NotEmpty(t, p.Collectors())

	_, err = framework.NewBuilder("fake").WithLoadBalancers(nil, lb.Options{}).WithLoadBalancers(cloud.LoadBalancers(), lb.Options{}).Build()
	assert.ErrorIs(t, err, framework.ErrBuild)
	assert.ErrorContains(t, err, "nil Backend")
	assert.ErrorContains(t, err, "called twice")
}

// onlyFind is a Backend without the Lister capability.
type onlyFind struct{ lb.Backend }

func TestPoolsWithoutListerAreABuildError(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	pools, err := ipam.NewLBAllocator(ipam.Pool{Name: "p", Ranges: []ipam.Range{ipam.PrefixRange(mustPrefix(t, "192.0.2.0/28"))}})
	require.NoError(t, err)
	_, err = framework.NewBuilder("fake").WithLoadBalancers(onlyFind{cloud.LoadBalancers()}, lb.Options{Pools: pools}).Build()
	assert.ErrorIs(t, err, framework.ErrBuild)
	assert.ErrorContains(t, err, "lb.Lister")
}

func TestReaperIsDisabledByDefaultAndChecked(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	withLB, err := framework.NewBuilder("fake").WithLoadBalancers(cloud.LoadBalancers(), lb.Options{}).Build()
	require.NoError(t, err)

	cfg, err := framework.ParseConfig(framework.CommandOptions{Provider: withLB}, nil)
	require.NoError(t, err)
	assert.False(t, cfg.Enabled(framework.LoadBalancerReaperName), "disabled by default")
	cfg, err = framework.ParseConfig(framework.CommandOptions{Provider: withLB}, []string{"--controllers=*,lb-reaper"})
	require.NoError(t, err)
	assert.True(t, cfg.Enabled(framework.LoadBalancerReaperName), "enabled by its alias")

	assert.ErrorContains(t, controllerCheck(t, withLB, framework.LoadBalancerReaperName), `--cluster-name="kubernetes"`, "upstream's default cluster name is refused")
	assert.NoError(t, controllerCheck(t, withLB, framework.LoadBalancerReaperName, "--cluster-name=prod"))
	assert.ErrorContains(t, controllerCheck(t, bareProvider(t, "fake"), framework.LoadBalancerReaperName, "--cluster-name=prod"), "no load-balancer block")
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	require.NoError(t, err)
	return p
}
