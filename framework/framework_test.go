package framework_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

func TestBuilderReportsEveryMisuse(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	_, err := framework.NewBuilder("Bad Name").
		WithInstances(cloud.Instances(), instances.CacheOptions{}).
		WithInstances(cloud.Instances(), instances.CacheOptions{}).
		WithBudget(cloudcall.BudgetOptions{ReadQPS: -1}).
		Build()
	require.ErrorIs(t, err, framework.ErrBuild)
	require.ErrorIs(t, err, cloudcall.ErrInvalidOptions)
	_, err2 := framework.NewBuilder("ok").WithInstances(nil, instances.CacheOptions{}).Build()
	require.ErrorContains(t, err2, "nil Source")
	for _, want := range []string{
		`provider name "Bad Name"`,
		"WithInstances called twice",
		"ReadQPS",
	} {
		assert.ErrorContains(t, err, want)
	}
}

func TestProviderReportsOnlyConfiguredBlocks(t *testing.T) {
	p, err := framework.NewBuilder("bare").Build()
	require.NoError(t, err)
	assert.Equal(t, "bare", p.ProviderName())
	assert.True(t, p.HasClusterID())
	if v, ok := p.InstancesV2(); ok || v != nil {
		t.Errorf("InstancesV2() = %v, %v; want nil, false (an untyped nil: upstream checks != nil)", v, ok)
	}
	if v, ok := p.LoadBalancer(); ok || v != nil {
		t.Errorf("LoadBalancer() = %v, %v", v, ok)
	}
	if v, ok := p.Routes(); ok || v != nil {
		t.Errorf("Routes() = %v, %v", v, ok)
	}
	if v, ok := p.Instances(); ok || v != nil {
		t.Errorf("Instances() = %v, %v", v, ok)
	}
	_, ok := p.Zones()
	assert.False(t, ok)
	_, ok = p.Clusters()
	assert.False(t, ok)
}

func TestProviderInstancesAndInitialize(t *testing.T) {
	cloud := fakecloud.New(fakecloud.Options{})
	require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
	p, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{}).Build()
	require.NoError(t, err)

	p.Initialize(nil, nil)
	p.Initialize(nil, nil)
	assert.Equal(t, 2, p.InitializeCount(), "Initialize is idempotent and may be called once per lock")

	v2, ok := p.InstancesV2()
	require.True(t, ok)
	md, err := v2.InstanceMetadata(t.Context(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
	require.NoError(t, err)
	assert.Equal(t, "fake://i-1", md.ProviderID)
	assert.Equal(t, 1, cloud.Count(fakecloud.OpListInstances), "the budget-paced cache served it from one list")
}

func TestSetInformersForgetsDeletedNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := fakecloud.New(fakecloud.Options{})
		require.NoError(t, cloud.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")))
		p, err := framework.NewBuilder("fake").WithInstances(cloud.Instances(), instances.CacheOptions{DisableList: true}).Build()
		require.NoError(t, err)
		node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: types.UID("u1")}, Spec: v1.NodeSpec{ProviderID: "fake://i-1"}}
		client := fake.NewClientset(node)
		f := informers.NewSharedInformerFactory(client, 0)
		p.SetInformers(f)
		p.SetInformers(f) // idempotent
		ctx, cancel := context.WithCancel(t.Context())
		defer f.Shutdown()
		defer cancel()
		f.Start(ctx.Done())
		f.WaitForCacheSync(ctx.Done())
		// The reflector has listed; wait until it also watches, or the
		// fake clientset drops a deletion made in between.
		synctest.Wait()

		v2, _ := p.InstancesV2()
		_, err = v2.InstanceExists(ctx, node)
		require.NoError(t, err)
		require.Equal(t, 1, cloud.Count(fakecloud.OpGetInstance))

		require.NoError(t, client.CoreV1().Nodes().Delete(ctx, "node-1", metav1.DeleteOptions{}))
		synctest.Wait() // the informer has delivered the deletion

		_, err = v2.InstanceExists(ctx, node)
		require.NoError(t, err)
		assert.Equal(t, 2, cloud.Count(fakecloud.OpGetInstance), "the deleted node's entry was forgotten")
	})
}

type routes struct{ cloudprovider.Routes }

func bareProvider(t *testing.T, name string) *framework.Provider {
	t.Helper()
	p, err := framework.NewBuilder(name).Build()
	require.NoError(t, err)
	return p
}

func routesProvider(t *testing.T) *framework.Provider {
	t.Helper()
	p, err := framework.NewBuilder("fake").WithUpstreamRoutes(routes{}).Build()
	require.NoError(t, err)
	return p
}

func TestCommandRequiresClusterCIDRForRoutes(t *testing.T) {
	p := routesProvider(t)
	_, err := execute(t, framework.CommandOptions{Provider: p}, offline(t)...)
	assert.ErrorContains(t, err, "needs --cluster-cidr")

	// Routes turned off by an alias, the canonical name or the flag: the
	// check passes and the command goes on to upstream's manager (stopped
	// here by an unreachable API server, which the test does not wait for:
	// it only checks the error is not the route check).
	for _, off := range []string{"--controllers=*,-route", "--controllers=*,-node-route-controller", "--configure-cloud-routes=false"} {
		cfg, err := framework.ParseConfig(framework.CommandOptions{Provider: p}, []string{off})
		require.NoError(t, err, off)
		assert.False(t, cfg.Runs("node-route-controller"), off)
	}
}
