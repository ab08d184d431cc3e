package fakecloud_test

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// A cloud whose load balancers take two polls to provision, and whose names
// make Create idempotent.
func ExampleCloud_LoadBalancers() {
	cloud := fakecloud.New(fakecloud.Options{LBProvisionPolls: 2})
	backend := cloud.LoadBalancers()
	ctx := context.Background()
	spec := &lb.Spec{
		Name:       lb.Name("5b2b0f4e-8c3a-4f4e-9d4b-3a1c2e5f6a7b"),
		Key:        lb.Key{Cluster: "prod", UID: "5b2b0f4e-8c3a-4f4e-9d4b-3a1c2e5f6a7b"},
		Listeners:  []lb.Listener{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080}},
		IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
	}
	created, _ := backend.Create(ctx, spec)
	fmt.Println(created.ID, created.Status, created.Ingress[0].IP, created.Ingress[0].IPMode)

	_, err := backend.Create(ctx, spec)
	var exists *lb.ExistsError
	fmt.Println("exists:", errors.As(err, &exists), exists.LoadBalancer.Spec.Key.Cluster)

	for range 3 {
		got, _ := backend.Find(ctx, spec.Key)
		fmt.Println(got.Status)
	}
	fmt.Println("creates:", cloud.Count(fakecloud.OpCreateLoadBalancer), "load balancers:", len(cloud.LoadBalancerList()))
	// Output:
	// lb-1 Pending 203.0.113.1 VIP
	// exists: true prod
	// Pending
	// Pending
	// Active
	// creates: 2 load balancers: 1
}
