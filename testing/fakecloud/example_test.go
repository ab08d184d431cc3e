package fakecloud_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// A cloud with one instance whose first lookup fails with a 429.
func Example() {
	cloud := fakecloud.New(fakecloud.Options{Seed: 1})
	if err := cloud.AddInstance(fakecloud.NewInstance("i-1", "node-1", "10.0.0.1")); err != nil {
		panic(err)
	}
	cloud.Inject(fakecloud.OpGetInstance, fakecloud.Fault{RetryAfter: 2e9, Times: 1})

	backend := cloud.Instances()
	_, err := backend.Lookup(context.Background(), instances.Key{ID: "i-1"})
	fmt.Println("throttled:", errors.Is(err, cloudcall.ErrThrottled))
	inst, err := backend.Lookup(context.Background(), instances.Key{ID: "i-1"})
	fmt.Println(inst.NodeName, inst.State, err)
	fmt.Println("calls:", cloud.Count(fakecloud.OpGetInstance))
	// Output:
	// throttled: true
	// node-1 running <nil>
	// calls: 2
}
