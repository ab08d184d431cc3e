package framework_test

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/cloud-provider/app/config"
	cpconfig "k8s.io/cloud-provider/config"
	cliflag "k8s.io/component-base/cli/flag"

	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func TestCommandHelpShowsNodeIPAMFlags(t *testing.T) {
	p, err := framework.NewBuilder("fake").Build()
	require.NoError(t, err)
	var extra cliflag.NamedFlagSets
	extra.FlagSet("fake provider").String("fake-region", "", "The region.")
	cmd, err := framework.NewCommand(p, framework.CommandOptions{AdditionalFlags: extra})
	require.NoError(t, err)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	require.NoError(t, cmd.Execute())
	help := out.String()

	for _, flag := range []string{"--node-cidr-mask-size ", "--node-cidr-mask-size-ipv4", "--node-cidr-mask-size-ipv6",
		"--service-cluster-ip-range", "--allocate-node-cidrs", "--cidr-allocator-type", "--cluster-cidr", "--fake-region"} {
		assert.Contains(t, help, flag)
	}
	assert.Contains(t, help, "Node-ipam-controller flags:", "the flags have their own section")
	assert.Contains(t, help, "Fake provider flags:", "the provider's sections are kept")
	known := regexp.MustCompile(`All controllers: ([^\n]*)`).FindStringSubmatch(help)
	require.NotNil(t, known, "--controllers lists every controller")
	assert.Contains(t, known[1], "node-ipam-controller")
}

func TestCommandParsesNodeIPAMFlags(t *testing.T) {
	p, err := framework.NewBuilder("fake").Build()
	require.NoError(t, err)
	cmd, err := framework.NewCommand(p, framework.CommandOptions{})
	require.NoError(t, err)
	require.NoError(t, cmd.ParseFlags([]string{"--node-cidr-mask-size-ipv6=80", "--service-cluster-ip-range=10.96.0.0/12,fd00:96::/108", "--controllers=nodeipam"}))
	assert.Equal(t, "80", cmd.Flags().Lookup("node-cidr-mask-size-ipv6").Value.String())
	assert.Equal(t, "0", cmd.Flags().Lookup("node-cidr-mask-size").Value.String(), "0 means upstream's per-family defaults")
	assert.Equal(t, "10.96.0.0/12,fd00:96::/108", cmd.Flags().Lookup("service-cluster-ip-range").Value.String())
}

func TestCommandRejectsNodeIPAMCollisions(t *testing.T) {
	for name, c := range map[string]framework.Controller{
		"name":  noopController(framework.NodeIPAMControllerName),
		"alias": noopController("mine", framework.NodeIPAMControllerAlias),
	} {
		p, err := framework.NewBuilder("fake").WithController(c).Build()
		require.NoError(t, err, name)
		_, err = framework.NewCommand(p, framework.CommandOptions{})
		assert.Error(t, err, name)
	}
	p, err := framework.NewBuilder("fake").Build()
	require.NoError(t, err)
	var extra cliflag.NamedFlagSets
	extra.FlagSet("mine").Int("node-cidr-mask-size", 0, "")
	_, err = framework.NewCommand(p, framework.CommandOptions{AdditionalFlags: extra})
	assert.ErrorContains(t, err, "--node-cidr-mask-size")
}

// completed returns a manager configuration with the given node IPAM flags.
func completed(allocate bool, clusterCIDR, allocatorType string) *config.CompletedConfig {
	var cc cpconfig.CloudControllerManagerConfiguration
	cc.KubeCloudShared.AllocateNodeCIDRs = allocate
	cc.KubeCloudShared.ClusterCIDR = clusterCIDR
	cc.KubeCloudShared.CIDRAllocatorType = allocatorType
	return (&config.Config{ComponentConfig: cc}).Complete()
}

func TestNodeIPAMControllerStartErrors(t *testing.T) {
	bare, err := framework.NewBuilder("fake").Build()
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		cfg     *config.CompletedConfig
		opts    framework.NodeIPAMOptions
		want    string
		invalid bool // errors.Is ipam.ErrInvalid
	}{
		"unknown allocator":        {completed(true, "10.0.0.0/16", "IPAMFromCluster"), framework.NodeIPAMOptions{}, `unknown --cidr-allocator-type "IPAMFromCluster"`, false},
		"range without CIDR":       {completed(true, "", framework.RangeAllocator), framework.NodeIPAMOptions{}, "requires --cluster-cidr", false},
		"cloud without instances":  {completed(true, "", framework.CloudAllocator), framework.NodeIPAMOptions{}, "instances block", false},
		"bad cluster CIDR":         {completed(true, "10.0.0.1/16", framework.RangeAllocator), framework.NodeIPAMOptions{}, "--cluster-cidr", true},
		"two IPv4 cluster CIDRs":   {completed(true, "10.0.0.0/16,10.1.0.0/16", framework.RangeAllocator), framework.NodeIPAMOptions{}, "at most one per family", true},
		"bad service range":        {completed(true, "10.0.0.0/16", ""), framework.NodeIPAMOptions{ServiceClusterIPRange: "10.96.0.0/12,fd00::/108,10.200.0.0/16"}, "at most two", true},
		"mask size in dual-stack":  {completed(true, "10.0.0.0/16,fd00::/48", ""), framework.NodeIPAMOptions{NodeCIDRMaskSize: 24}, "not allowed with a dual-stack", true},
		"IPv6 mask in IPv4 single": {completed(true, "10.0.0.0/16", ""), framework.NodeIPAMOptions{NodeCIDRMaskSizeIPv6: 64}, "single-stack IPv4", true},
		"IPv4 mask in IPv6 single": {completed(true, "fd00::/48", ""), framework.NodeIPAMOptions{NodeCIDRMaskSizeIPv4: 24}, "single-stack IPv6", true},
		"both mask kinds":          {completed(true, "10.0.0.0/16", ""), framework.NodeIPAMOptions{NodeCIDRMaskSize: 24, NodeCIDRMaskSizeIPv4: 25}, "not allowed with --node-cidr-mask-size", true},
		"mask shorter than CIDR":   {completed(true, "10.0.0.0/16", ""), framework.NodeIPAMOptions{NodeCIDRMaskSize: 8}, "shorter than cluster CIDR", true},
		"no configuration":         {nil, framework.NodeIPAMOptions{}, "no manager configuration", false},
	} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewClientset()
			c := framework.NodeIPAMController(&tc.opts)
			err := c.Start(t.Context(), framework.ControllerContext{
				Client: client, Informers: informers.NewSharedInformerFactory(client, 0), Config: tc.cfg, Provider: bare,
			})
			require.ErrorContains(t, err, tc.want)
			assert.Equal(t, tc.invalid, errors.Is(err, ipam.ErrInvalid), "errors.Is(err, ipam.ErrInvalid)")
		})
	}
}

// startNodeIPAM starts the framework's controller with cfg and opts on a
// fake clientset, creates node-1 and returns its pod CIDRs (nil when it
// gets none within a simulated minute).
func startNodeIPAM(t *testing.T, p *framework.Provider, cfg *config.CompletedConfig, opts framework.NodeIPAMOptions) []string {
	t.Helper()
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	ctx, cancel := context.WithCancel(t.Context())
	defer f.Shutdown()
	defer cancel()
	require.NoError(t, framework.NodeIPAMController(&opts).Start(ctx, framework.ControllerContext{
		Client: client, Informers: f, Config: cfg, Provider: p,
	}))
	f.Start(ctx.Done())
	_, err := client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	var got []string
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		got = n.Spec.PodCIDRs
		return len(got) > 0, err
	})
	return got
}

func TestNodeIPAMControllerAppliesFlags(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	inst := fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")
	inst.PodCIDRs = []string{"10.9.0.0/24"}
	require.NoError(t, cloud.AddInstance(inst))
	withInstances, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{}).Build()
	require.NoError(t, err)
	bare, err := framework.NewBuilder("fake").Build()
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		p    *framework.Provider
		cfg  *config.CompletedConfig
		opts framework.NodeIPAMOptions
		want []string
	}{
		"allocation off":            {bare, completed(false, "10.0.0.0/16", ""), framework.NodeIPAMOptions{}, nil},
		"defaults":                  {bare, completed(true, "10.0.0.0/16", ""), framework.NodeIPAMOptions{}, []string{"10.0.0.0/24"}},
		"single-stack mask size":    {bare, completed(true, "10.0.0.0/16", framework.RangeAllocator), framework.NodeIPAMOptions{NodeCIDRMaskSize: 26}, []string{"10.0.0.0/26"}},
		"single-stack IPv6":         {bare, completed(true, "fd00::/48", ""), framework.NodeIPAMOptions{NodeCIDRMaskSize: 80}, []string{"fd00::/80"}},
		"dual-stack sizes":          {bare, completed(true, "fd00::/48,10.0.0.0/16", ""), framework.NodeIPAMOptions{NodeCIDRMaskSizeIPv4: 25, NodeCIDRMaskSizeIPv6: 96}, []string{"fd00::/96", "10.0.0.0/25"}},
		"service range skipped":     {bare, completed(true, "10.0.0.0/16", ""), framework.NodeIPAMOptions{ServiceClusterIPRange: "10.0.0.0/23"}, []string{"10.0.2.0/24"}},
		"cloud allocator":           {withInstances, completed(true, "", framework.CloudAllocator), framework.NodeIPAMOptions{}, []string{"10.9.0.0/24"}},
		"cloud bounded by clusters": {withInstances, completed(true, "10.9.0.0/16", framework.CloudAllocator), framework.NodeIPAMOptions{}, []string{"10.9.0.0/24"}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				assert.Equal(t, tc.want, startNodeIPAM(t, tc.p, tc.cfg, tc.opts))
			})
		})
	}
}
