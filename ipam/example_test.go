package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/ipam"
)

func ExampleCIDRSet() {
	cluster, err := ipam.ParseCIDR("10.0.0.0/22")
	if err != nil {
		panic(err)
	}
	set, err := ipam.NewCIDRSet(cluster, 24)
	if err != nil {
		panic(err)
	}
	// After a restart, occupy what the nodes already have.
	if err := set.Occupy(netip.MustParsePrefix("10.0.1.0/24")); err != nil {
		panic(err)
	}
	for {
		p, err := set.AllocateNext()
		if errors.Is(err, ipam.ErrFull) {
			fmt.Println("full:", set.Allocated(), "of", set.Size())
			break
		}
		fmt.Println(p)
	}
	// Output:
	// 10.0.0.0/24
	// 10.0.2.0/24
	// 10.0.3.0/24
	// full: 4 of 4
}

func ExampleCIDRSet_ipv6() {
	// 2^32 subnets: memory is used only for what is allocated.
	set, err := ipam.NewCIDRSet(netip.MustParsePrefix("2001:db8::/32"), 64)
	if err != nil {
		panic(err)
	}
	for range 2 {
		p, _ := set.AllocateNext()
		fmt.Println(p)
	}
	err = set.Occupy(netip.MustParsePrefix("2001:db9::/64"))
	fmt.Println(errors.Is(err, ipam.ErrOutOfRange))
	fmt.Println(set.Size(), set.Free())
	// Output:
	// 2001:db8::/64
	// 2001:db8:0:1::/64
	// true
	// 4294967296 4294967294
}

func ExampleParseRanges() {
	rs, err := ipam.ParseRanges("192.0.2.10-192.0.2.20, 198.51.100.0/30, 2001:db8::5")
	if err != nil {
		panic(err)
	}
	for _, r := range rs {
		fmt.Println(r)
	}
	_, err = ipam.ParseRanges("192.0.2.20-192.0.2.10")
	fmt.Println(errors.Is(err, ipam.ErrInvalid))
	// Output:
	// 192.0.2.10-192.0.2.20
	// 198.51.100.0-198.51.100.3
	// 2001:db8::5
	// true
}

func ExampleAddrSet() {
	set, err := ipam.NewAddrSet(
		ipam.Range{First: netip.MustParseAddr("192.0.2.10"), Last: netip.MustParseAddr("192.0.2.11")},
		ipam.PrefixRange(netip.MustParsePrefix("198.51.100.0/31")),
	)
	if err != nil {
		panic(err)
	}
	_ = set.Occupy(netip.MustParseAddr("192.0.2.11"))
	for range 3 {
		a, err := set.AllocateNext()
		fmt.Println(a, err)
	}
	_, err = set.AllocateNext()
	fmt.Println(errors.Is(err, ipam.ErrFull))
	// Output:
	// 192.0.2.10 <nil>
	// 198.51.100.0 <nil>
	// 198.51.100.1 <nil>
	// true
}

func ExampleLBAllocator() {
	ranges, err := ipam.ParseRanges("192.0.2.0/29, 2001:db8::/125")
	if err != nil {
		panic(err)
	}
	alloc, err := ipam.NewLBAllocator(ipam.Pool{Name: "public", Ranges: ranges})
	if err != nil {
		panic(err)
	}
	service := func(name string, port int32, ingress ...string) *v1.Service {
		s := &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name)},
			Spec: v1.ServiceSpec{
				Type:       v1.ServiceTypeLoadBalancer,
				Ports:      []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: port}},
				IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			},
		}
		for _, ip := range ingress {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
		return s
	}
	web := service("web", 80, "192.0.2.0")

	// Nothing is allocated before the state is restored.
	_, err = alloc.Allocate(ipam.Request{Service: web})
	fmt.Println(errors.Is(err, ipam.ErrNotReady))

	// Restore from the Services and the cloud's load balancers.
	cloud := ipam.OwnedAddressesFunc(func(context.Context) ([]ipam.OwnedAddress, error) {
		return []ipam.OwnedAddress{{
			Service: ipam.ServiceRef{UID: "uid-api"},
			Addrs:   []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		}}, nil
	})
	api := service("api", 443)
	if err := alloc.Restore(context.Background(), []ipam.Request{{Service: web}, {Service: api}}, cloud); err != nil {
		panic(err)
	}
	for _, req := range []ipam.Request{
		{Service: web},
		{Service: api},
		{Service: service("shop", 80)},
		// Same sharing key, disjoint ports: one address.
		{Service: service("metrics", 9090), SharingKey: "shop"},
		{Service: service("admin", 8443), SharingKey: "shop"},
	} {
		addrs, err := alloc.Allocate(req)
		fmt.Println(req.Service.Name, addrs, err)
	}

	// A requested address held by another Service is a conflict.
	taken := service("taken", 80)
	taken.Spec.LoadBalancerIP = "192.0.2.0"
	_, err = alloc.Allocate(ipam.Request{Service: taken})
	var conflict *ipam.ConflictError
	if errors.As(err, &conflict) {
		fmt.Println("conflict with", conflict.Holder.Name)
	}
	// Output:
	// true
	// web [192.0.2.0] <nil>
	// api [192.0.2.1] <nil>
	// shop [192.0.2.2] <nil>
	// metrics [192.0.2.3] <nil>
	// admin [192.0.2.3] <nil>
	// conflict with web
}
