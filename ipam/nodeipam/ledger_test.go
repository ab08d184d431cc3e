package nodeipam_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccmkit/ccmkit/ipam"
	"github.com/ccmkit/ccmkit/ipam/nodeipam"
)

var pfx = netip.MustParsePrefix

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

func newLedger(t *testing.T, opts nodeipam.LedgerOptions) *nodeipam.Ledger {
	t.Helper()
	l, err := nodeipam.NewLedger(opts)
	require.NoError(t, err)
	return l
}

func TestLedgerAllocateIsAllOrNothingAndWakesWaiters(t *testing.T) {
	// IPv6 first: it is allocated, then released when IPv4 is full.
	l := newLedger(t, nodeipam.LedgerOptions{ClusterCIDRs: prefixes("fd00::/60", "10.0.0.0/24")})
	got, wake, err := l.Allocate("node-1", "u1")
	require.NoError(t, err)
	assert.Empty(t, wake)
	assert.Equal(t, prefixes("fd00::/64", "10.0.0.0/24"), got)

	_, _, err = l.Allocate("node-2", "u2")
	var ex *nodeipam.ExhaustedError
	require.ErrorAs(t, err, &ex)
	assert.ErrorIs(t, err, ipam.ErrFull)
	assert.Equal(t, nodeipam.CIDRUsage{ClusterCIDR: pfx("10.0.0.0/24"), MaskSize: 24, Used: 1, Size: 1}, ex.Usage)
	assert.True(t, l.Waiting("node-2"))
	want := []nodeipam.CIDRUsage{
		{ClusterCIDR: pfx("fd00::/60"), MaskSize: 64, Used: 1, Size: 16},
		{ClusterCIDR: pfx("10.0.0.0/24"), MaskSize: 24, Used: 1, Size: 1},
	}
	assert.Equal(t, want, l.Usage(), "usage after a failed allocation")
	_, _, err = l.Allocate("node-3", "u3")
	require.ErrorIs(t, err, ipam.ErrFull)

	assert.Equal(t, []string{"node-2", "node-3"}, l.Forget("node-1"), "freeing a subnet wakes the waiting Nodes, in name order")
	assert.False(t, l.Waiting("node-2"))
	got, _, err = l.Allocate("node-3", "u3")
	require.NoError(t, err)
	assert.Equal(t, prefixes("fd00::/64", "10.0.0.0/24"), got)
	_, _, err = l.Allocate("node-2", "u2")
	require.ErrorIs(t, err, ipam.ErrFull)
	assert.Empty(t, l.Forget("node-2"), "forgetting a waiting Node frees nothing")
	assert.False(t, l.Waiting("node-2"))
}

func TestLedgerReservationBelongsToOneNodeUID(t *testing.T) {
	l := newLedger(t, nodeipam.LedgerOptions{ClusterCIDRs: prefixes("10.0.0.0/16")})
	got, _, err := l.Allocate("node-1", "u1")
	require.NoError(t, err)
	again, _, err := l.Allocate("node-1", "u1")
	require.NoError(t, err)
	assert.Equal(t, got, again, "Allocate returns the reservation again")
	reserved, _ := l.Reserved("node-1", "u1")
	assert.Equal(t, got, reserved)

	problems, wake := l.Adopt("node-1", "u1", []string{"10.0.0.0/24"})
	assert.Empty(t, problems, "the reservation, now on the Node")
	assert.Empty(t, wake)
	assert.Equal(t, uint64(1), l.Usage()[0].Used)

	reserved, _ = l.Reserved("node-1", "u2")
	assert.Empty(t, reserved, "a new Node of that name has no reservation")
	_, _, known := l.CIDRs("node-1")
	assert.False(t, known, "the previous Node's record is dropped")
	assert.Equal(t, uint64(0), l.Usage()[0].Used)
}

func TestLedgerOverlapPassesToHeir(t *testing.T) {
	l := newLedger(t, nodeipam.LedgerOptions{ClusterCIDRs: prefixes("10.0.0.0/22"), ServiceCIDRs: prefixes("10.0.3.0/24")})
	problems, _ := l.Adopt("a-holder", "ua", []string{"10.0.1.0/24"})
	assert.Empty(t, problems)
	problems, _ = l.Adopt("b-twin", "ub", []string{"10.0.1.0/24"})
	assert.Equal(t, []nodeipam.Problem{{Reason: nodeipam.ReasonPodCIDRConflict, Message: "Pod CIDR 10.0.1.0/24 overlaps the pod CIDRs of Node a-holder"}}, problems)
	problems, _ = l.Adopt("c-service", "uc", []string{"10.0.3.0/25"})
	assert.Equal(t, []nodeipam.Problem{{Reason: nodeipam.ReasonPodCIDRConflict, Message: "Pod CIDR 10.0.3.0/25 overlaps the service range"}}, problems)
	problems, _ = l.Adopt("d-outside", "ud", []string{"192.168.0.0/24", "fd00::/64", "junk"})
	reasons := []string{}
	for _, p := range problems {
		reasons = append(reasons, p.Reason)
	}
	assert.Equal(t, []string{nodeipam.ReasonInvalidPodCIDR, nodeipam.ReasonInvalidPodCIDR, nodeipam.ReasonInvalidPodCIDR}, reasons)

	holder, ok := l.Holder(pfx("10.0.1.0/24"))
	require.True(t, ok)
	assert.Equal(t, "a-holder", holder)
	_, _, err := l.Allocate("e-waiting", "ue")
	require.NoError(t, err) // 10.0.0.0/24
	_, _, err = l.Allocate("f-waiting", "uf")
	require.NoError(t, err) // 10.0.2.0/24
	_, _, err = l.Allocate("g-waiting", "ug")
	require.ErrorIs(t, err, ipam.ErrFull)

	assert.Empty(t, l.Forget("a-holder"), "the subnet passes to b-twin: nothing is freed, nobody is woken")
	holder, ok = l.Holder(pfx("10.0.1.0/24"))
	require.True(t, ok)
	assert.Equal(t, "b-twin", holder)
	assert.Equal(t, []string{"g-waiting"}, l.Forget("b-twin"))
	_, ok = l.Holder(pfx("10.0.1.0/24"))
	assert.False(t, ok)
}

func TestLedgerClaimIsAllOrNothing(t *testing.T) {
	l := newLedger(t, nodeipam.LedgerOptions{ClusterCIDRs: prefixes("10.0.0.0/16"), UntrackedFamilies: true})
	problems, _ := l.Claim("node-1", "u1", prefixes("10.0.5.0/24", "fd00:9::/64"))
	assert.Empty(t, problems, "a family without a cluster CIDR is accepted untracked")
	problems, _ = l.Claim("node-2", "u2", prefixes("10.0.5.0/24"))
	require.Len(t, problems, 1)
	assert.Equal(t, nodeipam.ReasonPodCIDRConflict, problems[0].Reason)
	_, _, known := l.CIDRs("node-2")
	assert.False(t, known, "nothing taken")
	problems, _ = l.Claim("node-3", "u3", prefixes("10.0.6.0/24", "10.1.0.0/24"))
	require.NotEmpty(t, problems)
	assert.Equal(t, uint64(1), l.Usage()[0].Used, "10.0.6.0/24 was not taken")
}

func TestLedgerOrderAndMissingFamilies(t *testing.T) {
	l := newLedger(t, nodeipam.LedgerOptions{ClusterCIDRs: prefixes("fd00::/48", "10.0.0.0/16")})
	got, err := l.Order(prefixes("10.0.1.0/24", "fd00:0:0:1::/64"))
	require.NoError(t, err)
	assert.Equal(t, prefixes("fd00:0:0:1::/64", "10.0.1.0/24"), got)
	_, err = l.Order(prefixes("10.0.1.0/24", "10.0.2.0/24"))
	assert.ErrorIs(t, err, ipam.ErrInvalid)
	_, err = l.Order([]netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.1.1"), 24)})
	assert.ErrorIs(t, err, ipam.ErrInvalid)

	assert.Equal(t, []string{"IPv6"}, l.MissingFamilies(prefixes("10.0.1.0/24")))
	assert.Equal(t, []string{"IPv4"}, l.MissingFamilies(prefixes("fd00::/64")))
	assert.Empty(t, l.MissingFamilies(got))
	single := newLedger(t, nodeipam.LedgerOptions{ClusterCIDRs: prefixes("10.0.0.0/16")})
	assert.Empty(t, single.MissingFamilies(prefixes("10.0.1.0/24")))
}

func TestNewLedgerErrors(t *testing.T) {
	v4, v6 := pfx("10.244.0.0/16"), pfx("fd00:10:244::/56")
	for name, tc := range map[string]struct {
		opts nodeipam.LedgerOptions
		want string
	}{
		"two IPv4 cluster CIDRs":    {nodeipam.LedgerOptions{ClusterCIDRs: prefixes("10.0.0.0/16", "10.1.0.0/16")}, "at most one per family"},
		"host bits":                 {nodeipam.LedgerOptions{ClusterCIDRs: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 16)}}, "host bits"},
		"mask shorter than cluster": {nodeipam.LedgerOptions{ClusterCIDRs: []netip.Prefix{v4}, MaskSizeIPv4: 12}, "shorter than cluster CIDR"},
		"mask longer than address":  {nodeipam.LedgerOptions{ClusterCIDRs: []netip.Prefix{v6}, MaskSizeIPv6: 129}, "longer than an IPv6 address"},
		"mask without family":       {nodeipam.LedgerOptions{ClusterCIDRs: []netip.Prefix{v4}, MaskSizeIPv6: 64}, "no IPv6 cluster CIDR"},
		"negative mask":             {nodeipam.LedgerOptions{ClusterCIDRs: []netip.Prefix{v4}, MaskSizeIPv4: -1}, "negative"},
		"too many subnets":          {nodeipam.LedgerOptions{ClusterCIDRs: prefixes("fd00::/8")}, "limit of 2^48"},
		"two IPv4 service CIDRs":    {nodeipam.LedgerOptions{ClusterCIDRs: []netip.Prefix{v4}, ServiceCIDRs: prefixes("10.96.0.0/12", "10.200.0.0/16")}, "service CIDRs"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := nodeipam.NewLedger(tc.opts)
			require.ErrorIs(t, err, ipam.ErrInvalid)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	l, err := nodeipam.NewLedger(nodeipam.LedgerOptions{})
	require.NoError(t, err, "no cluster CIDR: a ledger for cloud mode")
	_, _, err = l.Allocate("node-1", "u1")
	assert.True(t, errors.Is(err, ipam.ErrInvalid), "nothing to allocate from: %v", err)
}
