package ipam

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

func newAddrSet(t testing.TB, ranges ...string) *AddrSet {
	t.Helper()
	var rs []Range
	for _, s := range ranges {
		r, err := ParseRange(s)
		require.NoError(t, err)
		rs = append(rs, r)
	}
	s, err := NewAddrSet(rs...)
	require.NoError(t, err)
	return s
}

func allocAddrs(t testing.TB, s *AddrSet, n int) []string {
	t.Helper()
	var out []string
	for range n {
		a, err := s.AllocateNext()
		require.NoError(t, err)
		out = append(out, a.String())
	}
	return out
}

func TestNewAddrSetErrors(t *testing.T) {
	tests := []struct {
		name   string
		ranges []Range
	}{
		{"none", nil},
		{"invalid", []Range{{}}},
		{"reversed", []Range{rng("10.0.0.2", "10.0.0.1")}},
		{"mixed families", []Range{rng("10.0.0.1", "10.0.0.2"), rng("fd00::1", "fd00::2")}},
		{"overlap", []Range{rng("10.0.0.1", "10.0.0.9"), rng("10.0.0.9", "10.0.0.12")}},
		{"too large", []Range{PrefixRange(netip.MustParsePrefix("2001:db8::/64"))}},
		{"too large together", []Range{PrefixRange(netip.MustParsePrefix("2001:db8::/80")), PrefixRange(netip.MustParsePrefix("2001:db9::/127"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewAddrSet(tt.ranges...)
			require.ErrorIs(t, err, ErrInvalid)
			require.Nil(t, s)
		})
	}
	s, err := NewAddrSet(PrefixRange(netip.MustParsePrefix("2001:db8::/80")))
	require.NoError(t, err)
	require.Equal(t, uint64(MaxSetSize), s.Size())
}

func TestAddrSet(t *testing.T) {
	// Ranges given out of order are used in address order.
	s := newAddrSet(t, "10.0.1.254-10.0.2.1", "10.0.0.10-10.0.0.11")
	require.Equal(t, uint64(6), s.Size())
	require.True(t, s.Is4())
	require.Equal(t, []Range{rng("10.0.0.10", "10.0.0.11"), rng("10.0.1.254", "10.0.2.1")}, s.Ranges())
	require.NoError(t, s.Occupy(netip.MustParseAddr("10.0.1.255")))
	require.NoError(t, s.Occupy(netip.MustParseAddr("10.0.1.255")), "idempotent")
	want := []string{"10.0.0.10", "10.0.0.11", "10.0.1.254", "10.0.2.0", "10.0.2.1"}
	if diff := cmp.Diff(want, allocAddrs(t, s, 5)); diff != "" {
		t.Errorf("AllocateNext (-want +got):\n%s", diff)
	}
	_, err := s.AllocateNext()
	require.ErrorIs(t, err, ErrFull)
	require.Zero(t, s.Free())

	a := netip.MustParseAddr("10.0.0.11")
	require.True(t, s.Has(a))
	require.NoError(t, s.Release(a))
	require.NoError(t, s.Release(a), "idempotent")
	require.False(t, s.Has(a))
	require.Equal(t, uint64(5), s.Allocated())
	require.Equal(t, []string{"10.0.0.11"}, allocAddrs(t, s, 1))

	for _, out := range []string{"10.0.0.9", "10.0.0.12", "10.0.2.2", "10.0.1.253", "::ffff:10.0.0.10", "fd00::1"} {
		a := netip.MustParseAddr(out)
		require.ErrorIs(t, s.Occupy(a), ErrOutOfRange, out)
		require.ErrorIs(t, s.Release(a), ErrOutOfRange, out)
		require.False(t, s.Contains(a), out)
		require.False(t, s.Has(a), out)
	}
	require.ErrorIs(t, s.Occupy(netip.Addr{}), ErrOutOfRange)
}

func TestAddrSetIPv6(t *testing.T) {
	// A range crossing a 64-bit boundary.
	s := newAddrSet(t, "2001:db8::ffff:ffff:ffff:fffe-2001:db8:0:1::1")
	require.Equal(t, uint64(4), s.Size())
	want := []string{"2001:db8::ffff:ffff:ffff:fffe", "2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:1::", "2001:db8:0:1::1"}
	if diff := cmp.Diff(want, allocAddrs(t, s, 4)); diff != "" {
		t.Errorf("AllocateNext (-want +got):\n%s", diff)
	}
	require.NoError(t, s.Release(netip.MustParseAddr("2001:db8:0:1::")))
	require.Equal(t, []string{"2001:db8:0:1::"}, allocAddrs(t, s, 1))
}

// TestAddrSetAllocateNextAllocs checks the zero-allocation steady state at
// 99.9% load.
func TestAddrSetAllocateNextAllocs(t *testing.T) {
	s := newAddrSet(t, "10.0.0.0/16")
	require.NoError(t, s.Occupy(netip.MustParseAddr("10.0.0.0")))
	for range s.Size() - 1 {
		_, err := s.AllocateNext()
		require.NoError(t, err)
	}
	free := []netip.Addr{netip.MustParseAddr("10.0.3.7"), netip.MustParseAddr("10.0.200.1")}
	for _, a := range free {
		require.NoError(t, s.Release(a))
	}
	allocs := testing.AllocsPerRun(1000, func() {
		a, err := s.AllocateNext()
		if err != nil || a != free[0] {
			t.Fatalf("AllocateNext = %v, %v", a, err)
		}
		if err := s.Release(a); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}
