package nodeipam_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/ipam/nodeipam"
)

func TestFlagsAddFlagsAsKubeControllerManager(t *testing.T) {
	var f nodeipam.Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.AddFlags(fs)
	for _, name := range nodeipam.FlagNames() {
		require.NotNil(t, fs.Lookup(name), "--%s", name)
	}
	assert.Equal(t, "0", fs.Lookup("node-cidr-mask-size").DefValue, "0 means the per-family defaults")
	assert.Contains(t, fs.Lookup("node-cidr-mask-size").Usage, "Default is 24 for IPv4 and 64 for IPv6")
	assert.Equal(t, "", fs.Lookup("service-cluster-ip-range").DefValue)
	require.NoError(t, fs.Parse([]string{"--node-cidr-mask-size-ipv4=25", "--node-cidr-mask-size-ipv6=80", "--service-cluster-ip-range=10.96.0.0/12,fd00:96::/108"}))
	assert.Equal(t, nodeipam.Flags{NodeCIDRMaskSizeIPv4: 25, NodeCIDRMaskSizeIPv6: 80, ServiceClusterIPRange: "10.96.0.0/12,fd00:96::/108"}, f)
}

func on(clusterCIDR, allocatorType string) nodeipam.UpstreamFlags {
	return nodeipam.UpstreamFlags{AllocateNodeCIDRs: true, ClusterCIDR: clusterCIDR, CIDRAllocatorType: allocatorType}
}

func TestFlagsOptions(t *testing.T) {
	for name, tc := range map[string]struct {
		flags nodeipam.Flags
		up    nodeipam.UpstreamFlags
		want  nodeipam.Options
	}{
		"defaults": {nodeipam.Flags{}, on("10.0.0.0/16", ""),
			nodeipam.Options{Allocator: nodeipam.RangeAllocator, ClusterCIDRs: prefixes("10.0.0.0/16")}},
		"single-stack mask size": {nodeipam.Flags{NodeCIDRMaskSize: 26}, on("10.0.0.0/16", nodeipam.RangeAllocator),
			nodeipam.Options{Allocator: nodeipam.RangeAllocator, ClusterCIDRs: prefixes("10.0.0.0/16"), MaskSizeIPv4: 26}},
		"single-stack IPv6": {nodeipam.Flags{NodeCIDRMaskSize: 80}, on("fd00::/48", ""),
			nodeipam.Options{Allocator: nodeipam.RangeAllocator, ClusterCIDRs: prefixes("fd00::/48"), MaskSizeIPv6: 80}},
		"dual-stack sizes": {nodeipam.Flags{NodeCIDRMaskSizeIPv4: 25, NodeCIDRMaskSizeIPv6: 96}, on(" fd00::/48, 10.0.0.0/16 ", ""),
			nodeipam.Options{Allocator: nodeipam.RangeAllocator, ClusterCIDRs: prefixes("fd00::/48", "10.0.0.0/16"), MaskSizeIPv4: 25, MaskSizeIPv6: 96}},
		"service ranges": {nodeipam.Flags{ServiceClusterIPRange: "10.96.0.0/12,fd00:96::/108"}, on("10.0.0.0/8,fd00::/48", ""),
			nodeipam.Options{Allocator: nodeipam.RangeAllocator, ClusterCIDRs: prefixes("10.0.0.0/8", "fd00::/48"), ServiceCIDRs: prefixes("10.96.0.0/12", "fd00:96::/108")}},
		"cloud without --cluster-cidr": {nodeipam.Flags{}, on("", nodeipam.CloudAllocator),
			nodeipam.Options{Allocator: nodeipam.CloudAllocator}},
		"cloud bounded by --cluster-cidr": {nodeipam.Flags{NodeCIDRMaskSizeIPv4: 26}, on("10.0.0.0/16", nodeipam.CloudAllocator),
			nodeipam.Options{Allocator: nodeipam.CloudAllocator, ClusterCIDRs: prefixes("10.0.0.0/16"), MaskSizeIPv4: 26}},
	} {
		t.Run(name, func(t *testing.T) {
			got, enabled, err := tc.flags.Options(tc.up, true)
			require.NoError(t, err)
			assert.True(t, enabled)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFlagsOptionsDisabled(t *testing.T) {
	f := nodeipam.Flags{NodeCIDRMaskSize: 99}
	opts, enabled, err := f.Options(nodeipam.UpstreamFlags{AllocateNodeCIDRs: false, CIDRAllocatorType: "Bogus"}, false)
	require.NoError(t, err, "with --allocate-node-cidrs=false nothing is checked, as in kube-controller-manager")
	assert.False(t, enabled)
	assert.Equal(t, nodeipam.Options{}, opts)
}

// Every flag problem is found by Options, before the controller starts;
// each error names the flag at fault and wraps ipam.ErrInvalid.
func TestFlagsOptionsErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		flags        nodeipam.Flags
		up           nodeipam.UpstreamFlags
		hasInstances bool
		want         []string
	}{
		"range without --cluster-cidr": {nodeipam.Flags{}, on("", ""), true, []string{"requires --cluster-cidr", "CloudAllocator does not"}},
		"unknown allocator":            {nodeipam.Flags{}, on("10.0.0.0/16", "Bogus"), true, []string{`unknown --cidr-allocator-type "Bogus"`}},
		"cloud without instances":      {nodeipam.Flags{}, on("", nodeipam.CloudAllocator), false, []string{"--cidr-allocator-type=CloudAllocator", "instances block"}},
		"a /33":                        {nodeipam.Flags{}, on("10.0.0.0/33", ""), true, []string{"--cluster-cidr", "10.0.0.0/33"}},
		"host bits":                    {nodeipam.Flags{}, on("10.0.0.1/16", ""), true, []string{"--cluster-cidr", "host bits"}},
		"two IPv4 cluster CIDRs":       {nodeipam.Flags{}, on("10.0.0.0/16,10.1.0.0/16", ""), true, []string{"--cluster-cidr", "at most one per family"}},
		"three cluster CIDRs":          {nodeipam.Flags{}, on("10.0.0.0/16,fd00::/48,fd01::/48", ""), true, []string{"--cluster-cidr", "at most two"}},
		"mask size 33":                 {nodeipam.Flags{NodeCIDRMaskSize: 33}, on("10.0.0.0/16", ""), true, []string{"--node-cidr-mask-size=33", "longer than an IPv4 address"}},
		"IPv6 mask size 129":           {nodeipam.Flags{NodeCIDRMaskSizeIPv6: 129}, on("10.0.0.0/16,fd00::/48", ""), true, []string{"--node-cidr-mask-size-ipv6=129", "longer than an IPv6 address"}},
		"negative mask size":           {nodeipam.Flags{NodeCIDRMaskSizeIPv4: -1}, on("10.0.0.0/16", ""), true, []string{"--node-cidr-mask-size-ipv4=-1", "negative"}},
		"mask shorter than cluster":    {nodeipam.Flags{NodeCIDRMaskSize: 8}, on("10.0.0.0/16", ""), true, []string{"--node-cidr-mask-size=8", "shorter than --cluster-cidr 10.0.0.0/16"}},
		"default mask too short":       {nodeipam.Flags{}, on("10.0.0.0/25", ""), true, []string{"default IPv4 node mask size /24", "--node-cidr-mask-size-ipv4"}},
		"too many subnets":             {nodeipam.Flags{}, on("fd00::/8", ""), true, []string{"--cluster-cidr fd00::/8", "2^56"}},
		"mask size in dual-stack":      {nodeipam.Flags{NodeCIDRMaskSize: 24}, on("10.0.0.0/16,fd00::/48", ""), true, []string{"--node-cidr-mask-size is not allowed with a dual-stack --cluster-cidr"}},
		"IPv6 mask in IPv4 single":     {nodeipam.Flags{NodeCIDRMaskSizeIPv6: 64}, on("10.0.0.0/16", ""), true, []string{"--node-cidr-mask-size-ipv6 is not allowed with a single-stack IPv4"}},
		"IPv4 mask in IPv6 single":     {nodeipam.Flags{NodeCIDRMaskSizeIPv4: 24}, on("fd00::/48", ""), true, []string{"--node-cidr-mask-size-ipv4 is not allowed with a single-stack IPv6"}},
		"both mask kinds":              {nodeipam.Flags{NodeCIDRMaskSize: 24, NodeCIDRMaskSizeIPv4: 25}, on("10.0.0.0/16", ""), true, []string{"not allowed with --node-cidr-mask-size"}},
		"mask sizes without clusters":  {nodeipam.Flags{NodeCIDRMaskSize: 24}, on("", nodeipam.CloudAllocator), true, []string{"mask sizes need --cluster-cidr"}},
		"three service ranges":         {nodeipam.Flags{ServiceClusterIPRange: "10.96.0.0/12,fd00::/108,10.200.0.0/16"}, on("10.0.0.0/16", ""), true, []string{"--service-cluster-ip-range", "at most two"}},
		"two IPv4 service ranges":      {nodeipam.Flags{ServiceClusterIPRange: "10.96.0.0/12,10.200.0.0/16"}, on("10.0.0.0/16", ""), true, []string{"--service-cluster-ip-range", "at most one per family"}},
		"malformed service range":      {nodeipam.Flags{ServiceClusterIPRange: "10.96.0.0"}, on("10.0.0.0/16", ""), true, []string{"--service-cluster-ip-range"}},
		"every problem at once": {nodeipam.Flags{ServiceClusterIPRange: "nope"}, on("10.0.0.0/16", "Bogus"), true,
			[]string{"--cidr-allocator-type", "--service-cluster-ip-range"}},
	} {
		t.Run(name, func(t *testing.T) {
			opts, enabled, err := tc.flags.Options(tc.up, tc.hasInstances)
			require.ErrorIs(t, err, ipam.ErrInvalid)
			for _, w := range tc.want {
				assert.ErrorContains(t, err, w)
			}
			assert.False(t, enabled)
			assert.Equal(t, nodeipam.Options{}, opts)
		})
	}
}

// The options Flags.Options returns are accepted by New (cloud mode once
// CloudCIDRs is set), so a controller never fails at start on a flag.
func TestFlagsOptionsAreAcceptedByNew(t *testing.T) {
	client := fake.NewClientset()
	nodes := informers.NewSharedInformerFactory(client, 0).Core().V1().Nodes()
	f := nodeipam.Flags{NodeCIDRMaskSizeIPv4: 26, ServiceClusterIPRange: "10.0.0.0/24"}
	opts, _, err := f.Options(on("10.0.0.0/16,fd00::/48", ""), false)
	require.NoError(t, err)
	_, err = nodeipam.New(client, nodes, opts)
	require.NoError(t, err)

	opts, _, err = (&nodeipam.Flags{}).Options(on("", nodeipam.CloudAllocator), true)
	require.NoError(t, err)
	_, err = nodeipam.New(client, nodes, opts)
	require.ErrorIs(t, err, ipam.ErrInvalid, "cloud mode without CloudCIDRs")
	assert.ErrorContains(t, err, "needs CloudCIDRs")
	opts.CloudCIDRs = func(context.Context, *v1.Node) ([]netip.Prefix, error) { return nil, nil }
	_, err = nodeipam.New(client, nodes, opts)
	require.NoError(t, err)
}
