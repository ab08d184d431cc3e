package nodeipam_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/spf13/pflag"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/ccmkit/ccmkit/ipam/nodeipam"
)

// A command binds the flags, validates them with upstream's values before
// leader election, and reports every problem at once.
func ExampleFlags_Options() {
	var f nodeipam.Flags
	fs := pflag.NewFlagSet("ccm", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse([]string{"--node-cidr-mask-size-ipv4=26"}); err != nil {
		fmt.Println(err)
		return
	}
	opts, enabled, err := f.Options(nodeipam.UpstreamFlags{
		AllocateNodeCIDRs: true,
		ClusterCIDR:       "10.244.0.0/16,fd00:10:244::/56",
	}, false)
	fmt.Println(enabled, err, opts.Allocator, opts.ClusterCIDRs, opts.MaskSizeIPv4, opts.MaskSizeIPv6)

	_, enabled, err = f.Options(nodeipam.UpstreamFlags{AllocateNodeCIDRs: false}, false)
	fmt.Println(enabled, err)

	_, _, err = f.Options(nodeipam.UpstreamFlags{AllocateNodeCIDRs: true, CIDRAllocatorType: "Bogus"}, false)
	fmt.Println(err)
	// Output:
	// true <nil> RangeAllocator [10.244.0.0/16 fd00:10:244::/56] 26 0
	// false <nil>
	// node IPAM: unknown --cidr-allocator-type "Bogus": want RangeAllocator or CloudAllocator: invalid argument
	// node IPAM: the node mask sizes need --cluster-cidr (with CloudAllocator the cloud chooses the sizes): invalid argument
}

// The Ledger is node IPAM's bookkeeping without an API client: here a
// cluster CIDR with room for two Nodes.
func ExampleLedger() {
	l, err := nodeipam.NewLedger(nodeipam.LedgerOptions{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/23")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// After a restart, record what the Nodes already have.
	problems, _ := l.Adopt("node-a", "uid-a", []string{"10.0.1.0/24"})
	fmt.Println("adopted:", problems)
	cidrs, _, err := l.Allocate("node-b", "uid-b")
	fmt.Println("node-b:", cidrs, err)
	_, _, err = l.Allocate("node-c", "uid-c")
	fmt.Println("node-c:", err)
	wake := l.Forget("node-a")
	fmt.Println("node-a deleted; retry:", wake)
	cidrs, _, err = l.Allocate("node-c", "uid-c")
	fmt.Println("node-c:", cidrs, err)
	// Output:
	// adopted: []
	// node-b: [10.0.0.0/24] <nil>
	// node-c: nodeipam: every /24 subnet of cluster CIDR 10.0.0.0/23 is in use (2 of 2)
	// node-a deleted; retry: [node-c]
	// node-c: [10.0.1.0/24] <nil>
}

// Wiring the controller by hand, without the framework: validate the
// flags, New, start the informers, and Run, which blocks until ctx ends.
// (Compile-only: it needs an API server.)
func ExampleNew() {
	var client kubernetes.Interface // the manager's client for nodeipam.ClientName
	ctx := context.Background()     // ends when the manager stops
	var f nodeipam.Flags            // bound to the command's flags with AddFlags

	opts, enabled, err := f.Options(nodeipam.UpstreamFlags{AllocateNodeCIDRs: true, ClusterCIDR: "10.244.0.0/16"}, false)
	if err != nil || !enabled {
		fmt.Println("not started:", err)
		return
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := nodeipam.New(client, factory.Core().V1().Nodes(), opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
}
