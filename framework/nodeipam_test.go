package framework_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// nodeIPAMCheck parses args as the command does and runs the node IPAM
// controller's Check, which the command runs before leader election.
func nodeIPAMCheck(t *testing.T, p *framework.Provider, args ...string) error {
	t.Helper()
	cfg, err := framework.ParseConfig(framework.CommandOptions{Provider: p}, args)
	require.NoError(t, err)
	for _, c := range cfg.Controllers() {
		if c.Name == framework.NodeIPAMControllerName {
			return c.Check(cfg)
		}
	}
	t.Fatal("no node IPAM controller in the table")
	return nil
}

func TestNodeIPAMFlagsAreCheckedBeforeLeaderElection(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	withInstances, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{}).Build()
	require.NoError(t, err)
	bare := bareProvider(t, "fake")
	for name, tc := range map[string]struct {
		p       *framework.Provider
		args    []string
		want    string // "" for no error
		invalid bool
	}{
		"allocation off":           {bare, nil, "not started", false},
		"defaults":                 {bare, []string{"--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16"}, "", false},
		"cloud with instances":     {withInstances, []string{"--allocate-node-cidrs", "--cidr-allocator-type=CloudAllocator"}, "", false},
		"range without CIDR":       {bare, []string{"--allocate-node-cidrs"}, "requires --cluster-cidr", true},
		"unknown allocator":        {bare, []string{"--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16", "--cidr-allocator-type=Bogus"}, "Bogus", true},
		"cloud without instances":  {bare, []string{"--allocate-node-cidrs", "--cidr-allocator-type=CloudAllocator"}, "instances", true},
		"mask size in dual-stack":  {bare, []string{"--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16,fd00::/48", "--node-cidr-mask-size=24"}, "dual-stack", true},
		"IPv6 mask in IPv4 single": {bare, []string{"--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16", "--node-cidr-mask-size-ipv6=64"}, "single-stack IPv4", true},
		"mask of 33":               {bare, []string{"--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16", "--node-cidr-mask-size=33"}, "--node-cidr-mask-size", true},
		"bad service range":        {bare, []string{"--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16", "--service-cluster-ip-range=10.96.0.0/33"}, "--service-cluster-ip-range", true},
	} {
		t.Run(name, func(t *testing.T) {
			err := nodeIPAMCheck(t, tc.p, tc.args...)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			assert.Equal(t, tc.invalid, errors.Is(err, ipam.ErrInvalid), "errors.Is(err, ipam.ErrInvalid)")
			assert.Equal(t, !tc.invalid, errors.Is(err, framework.ErrNotStarted), "errors.Is(err, framework.ErrNotStarted)")
		})
	}
}
