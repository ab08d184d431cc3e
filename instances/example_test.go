package instances_test

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
)

// A minimal Source: a map from instance ID to instance.
type mapSource map[string]*instances.Instance

func (m mapSource) Lookup(_ context.Context, key instances.Key) (*instances.Instance, error) {
	for _, inst := range m {
		if inst.ID == key.ID || (key.ID == "" && inst.NodeName == key.NodeName) {
			return inst, nil
		}
	}
	return nil, cloudcall.NotFoundf("instance %s", key)
}

func ExampleNewInstancesV2() {
	src := mapSource{"i-1": {ID: "i-1", NodeName: "node-1", Type: "m.small", Zone: "z1", Region: "r1", State: instances.StateStopped}}
	cache, err := instances.NewCache(src, instances.CacheOptions{})
	if err != nil {
		panic(err)
	}
	v2 := instances.NewInstancesV2(cache, "example")
	ctx := context.Background()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}

	md, _ := v2.InstanceMetadata(ctx, node)
	shutdown, _ := v2.InstanceShutdown(ctx, node)
	gone, _ := v2.InstanceExists(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-2"}})
	fmt.Println(md.ProviderID, md.Zone, shutdown, gone)
	// Output: example://i-1 z1 true false
}

func ExampleParseProviderID() {
	id, err := instances.ParseProviderID("example", "example:///zone-a/i-0abc")
	fmt.Println(id, err)
	_, err = instances.ParseProviderID("example", "other://i-1")
	fmt.Println(err)
	// Output:
	// /zone-a/i-0abc <nil>
	// invalid provider ID "other://i-1": belongs to provider "other", not "example"
}
