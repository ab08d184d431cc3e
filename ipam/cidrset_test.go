package ipam

import (
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	require.NoError(t, err)
	return p
}

func newSet(t testing.TB, cluster string, bits int) *CIDRSet {
	t.Helper()
	s, err := NewCIDRSet(mustPrefix(t, cluster), bits)
	require.NoError(t, err)
	return s
}

// allocN allocates n subnets and returns them as strings.
func allocN(t testing.TB, s *CIDRSet, n int) []string {
	t.Helper()
	var out []string
	for range n {
		p, err := s.AllocateNext()
		require.NoError(t, err)
		out = append(out, p.String())
	}
	return out
}

func TestNewCIDRSet(t *testing.T) {
	tests := []struct {
		name    string
		cluster netip.Prefix
		bits    int
		size    uint64
		wantErr error
	}{
		{"v4 /8 into /24", mustPrefix(t, "10.0.0.0/8"), 24, 1 << 16, nil},
		{"v4 same size", mustPrefix(t, "10.0.0.0/24"), 24, 1, nil},
		{"v4 into /32", mustPrefix(t, "10.0.0.0/24"), 32, 256, nil},
		{"v4 /0 into /32", mustPrefix(t, "0.0.0.0/0"), 32, 1 << 32, nil},
		{"v6 /48 into /64", mustPrefix(t, "fd00::/48"), 64, 1 << 16, nil},
		{"v6 /32 into /64", mustPrefix(t, "2001:db8::/32"), 64, 1 << 32, nil},
		{"v6 at the limit", mustPrefix(t, "fd00::/16"), 64, MaxSetSize, nil},
		{"v6 /120 into /128", mustPrefix(t, "fd00::/120"), 128, 256, nil},
		{"v6 over the limit", mustPrefix(t, "fd00::/15"), 64, 0, ErrInvalid},
		{"subnet larger than cluster", mustPrefix(t, "10.0.0.0/16"), 8, 0, ErrInvalid},
		{"subnet longer than address", mustPrefix(t, "10.0.0.0/16"), 33, 0, ErrInvalid},
		{"host bits", mustPrefix(t, "10.0.0.1/8"), 24, 0, ErrInvalid},
		{"invalid prefix", netip.Prefix{}, 24, 0, ErrInvalid},
		{"4in6", mustPrefix(t, "::ffff:10.0.0.0/104"), 120, 0, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewCIDRSet(tt.cluster, tt.bits)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Nil(t, s)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.size, s.Size())
			require.Equal(t, tt.size, s.Free())
			require.Zero(t, s.Allocated())
		})
	}
}

func TestCIDRSetAllocateNext(t *testing.T) {
	tests := []struct {
		cluster string
		bits    int
		want    []string
	}{
		{"10.0.0.0/22", 24, []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"}},
		{"10.0.0.0/24", 24, []string{"10.0.0.0/24"}},
		{"192.168.0.0/30", 32, []string{"192.168.0.0/32", "192.168.0.1/32", "192.168.0.2/32", "192.168.0.3/32"}},
		{"fd00:1::/62", 64, []string{"fd00:1::/64", "fd00:1:0:1::/64", "fd00:1:0:2::/64", "fd00:1:0:3::/64"}},
		{"fd00::/63", 64, []string{"fd00::/64", "fd00:0:0:1::/64"}},
		{"fd00::ff00/126", 128, []string{"fd00::ff00/128", "fd00::ff01/128", "fd00::ff02/128", "fd00::ff03/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.cluster, func(t *testing.T) {
			s := newSet(t, tt.cluster, tt.bits)
			if diff := cmp.Diff(tt.want, allocN(t, s, len(tt.want))); diff != "" {
				t.Errorf("AllocateNext (-want +got):\n%s", diff)
			}
			_, err := s.AllocateNext()
			require.ErrorIs(t, err, ErrFull)
			require.Equal(t, s.Size(), s.Allocated())
			require.Zero(t, s.Free())
		})
	}
}

func TestCIDRSetOccupyRelease(t *testing.T) {
	type op struct {
		occupy bool // else release
		prefix string
		err    error
	}
	tests := []struct {
		name string
		ops  []op
		// allocated subnets after the ops, in order, read by AllocateNext
		// on a fresh copy is not possible; so list the next allocations.
		next      []string
		allocated uint64
	}{
		{
			name:      "occupy one, next skips it",
			ops:       []op{{true, "10.0.0.0/24", nil}},
			next:      []string{"10.0.1.0/24", "10.0.2.0/24"},
			allocated: 3,
		},
		{
			name:      "occupy is idempotent",
			ops:       []op{{true, "10.0.1.0/24", nil}, {true, "10.0.1.0/24", nil}},
			next:      []string{"10.0.0.0/24", "10.0.2.0/24"},
			allocated: 3,
		},
		{
			name:      "occupy a larger prefix occupies every subnet in it",
			ops:       []op{{true, "10.0.0.0/23", nil}},
			next:      []string{"10.0.2.0/24"},
			allocated: 3,
		},
		{
			name:      "occupy a smaller prefix occupies its subnet",
			ops:       []op{{true, "10.0.0.128/25", nil}},
			next:      []string{"10.0.1.0/24"},
			allocated: 2,
		},
		{
			name:      "release inside an occupied larger prefix",
			ops:       []op{{true, "10.0.0.0/22", nil}, {false, "10.0.2.0/24", nil}},
			next:      []string{"10.0.2.0/24"},
			allocated: 4,
		},
		{
			name:      "release is idempotent",
			ops:       []op{{true, "10.0.0.0/24", nil}, {false, "10.0.0.0/24", nil}, {false, "10.0.0.0/24", nil}},
			next:      []string{"10.0.0.0/24"},
			allocated: 1,
		},
		{
			name:      "release a larger prefix",
			ops:       []op{{true, "10.0.0.0/16", nil}, {false, "10.0.4.0/22", nil}},
			next:      []string{"10.0.4.0/24"},
			allocated: 256 - 4 + 1,
		},
		{
			name:      "release a smaller prefix is refused",
			ops:       []op{{true, "10.0.0.0/24", nil}, {false, "10.0.0.0/25", ErrInvalid}},
			next:      []string{"10.0.1.0/24"},
			allocated: 2,
		},
		{
			name: "outside the cluster",
			ops: []op{
				{true, "11.0.0.0/24", ErrOutOfRange},
				{false, "11.0.0.0/24", ErrOutOfRange},
				{true, "0.0.0.0/0", ErrOutOfRange},
				{true, "fd00::/64", ErrOutOfRange},
				{true, "::ffff:10.0.0.0/120", ErrInvalid},
			},
			next:      []string{"10.0.0.0/24"},
			allocated: 1,
		},
		{
			name:      "host bits",
			ops:       []op{{true, "10.0.0.1/24", ErrInvalid}, {false, "10.0.0.1/24", ErrInvalid}},
			next:      []string{"10.0.0.0/24"},
			allocated: 1,
		},
		{
			name:      "whole cluster",
			ops:       []op{{true, "10.0.0.0/8", nil}, {false, "10.255.255.0/24", nil}},
			next:      []string{"10.255.255.0/24"},
			allocated: 1 << 16,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(t, "10.0.0.0/8", 24)
			for _, o := range tt.ops {
				p := mustPrefix(t, o.prefix)
				var err error
				if o.occupy {
					err = s.Occupy(p)
				} else {
					err = s.Release(p)
				}
				if o.err != nil {
					require.ErrorIs(t, err, o.err, "prefix %s", o.prefix)
				} else {
					require.NoError(t, err, "prefix %s", o.prefix)
				}
			}
			if diff := cmp.Diff(tt.next, allocN(t, s, len(tt.next))); diff != "" {
				t.Errorf("next allocations (-want +got):\n%s", diff)
			}
			require.Equal(t, tt.allocated, s.Allocated())
			require.Equal(t, s.Size()-tt.allocated, s.Free())
		})
	}
}

func TestCIDRSetHas(t *testing.T) {
	s := newSet(t, "fd00::/48", 64)
	p, err := s.AllocateNext()
	require.NoError(t, err)
	require.True(t, s.Has(p))
	require.False(t, s.Has(mustPrefix(t, "fd00:0:0:1::/64")))
	require.False(t, s.Has(mustPrefix(t, "fd00::/63")), "not a subnet")
	require.False(t, s.Has(mustPrefix(t, "fd01::/64")), "outside")
	require.False(t, s.Has(netip.Prefix{}))
}

// TestCIDRSetWideIPv6 checks that a 2^32-subnet set stays lazy: allocating
// at both ends and occupying a /40 materializes only a few nodes.
func TestCIDRSetWideIPv6(t *testing.T) {
	s := newSet(t, "2001:db8::/32", 64)
	require.Equal(t, uint64(1)<<32, s.Size())
	require.Equal(t, []string{"2001:db8::/64", "2001:db8:0:1::/64"}, allocN(t, s, 2))
	require.NoError(t, s.Occupy(mustPrefix(t, "2001:db8:8000::/40")))
	require.NoError(t, s.Occupy(mustPrefix(t, "2001:db8:ffff:ffff::/64")))
	require.Equal(t, uint64(2+1<<24+1), s.Allocated())
	if n := countNodes(s.set.bm.root, s.set.bm.levels); n > 16 {
		t.Errorf("%d bitmap nodes materialized, want a handful", n)
	}
}

func countNodes(n *node, level int) int {
	c := 1
	if level > 1 {
		for _, k := range n.kids {
			if k != nil {
				c += countNodes(k, level-1)
			}
		}
	}
	return c
}

// TestCIDRSetAllocateNextAllocs checks that AllocateNext does not allocate on
// the heap in steady state, even when the set is nearly full.
func TestCIDRSetAllocateNextAllocs(t *testing.T) {
	for _, tt := range []struct{ cluster string }{{"10.0.0.0/8"}, {"2001:db8::/32"}} {
		t.Run(tt.cluster, func(t *testing.T) {
			s := newSet(t, tt.cluster, 24+32*boolInt(mustPrefix(t, tt.cluster).Addr().Is6()))
			if s.Size() == 1<<16 {
				require.NoError(t, s.Occupy(s.Cluster()))
			} else {
				allocN(t, s, 1<<14)
			}
			p := s.prefix(1 << 13)
			require.NoError(t, s.Release(p))
			allocs := testing.AllocsPerRun(1000, func() {
				got, err := s.AllocateNext()
				if err != nil || got != p {
					t.Fatalf("AllocateNext = %v, %v; want %v", got, err, p)
				}
				if err := s.Release(got); err != nil {
					t.Fatal(err)
				}
			})
			require.Zero(t, allocs)
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCIDRSetConcurrent allocates from several goroutines and checks that no
// subnet is handed out twice.
func TestCIDRSetConcurrent(t *testing.T) {
	s := newSet(t, "10.0.0.0/8", 24)
	const workers, each = 4, 500
	results := make([][]netip.Prefix, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				p, err := s.AllocateNext()
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], p)
				if len(results[w])%3 == 0 {
					if err := s.Release(p); err != nil {
						t.Error(err)
					}
					results[w] = results[w][:len(results[w])-1]
				}
			}
		})
	}
	wg.Wait()
	seen := map[netip.Prefix]bool{}
	for _, rs := range results {
		for _, p := range rs {
			require.False(t, seen[p], "%s allocated twice", p)
			seen[p] = true
			require.True(t, s.Has(p))
		}
	}
	require.Equal(t, uint64(len(seen)), s.Allocated())
}

func TestCIDRSetErrorsAreWrapped(t *testing.T) {
	s := newSet(t, "10.0.0.0/32", 32)
	_, err := s.AllocateNext()
	require.NoError(t, err)
	_, err = s.AllocateNext()
	require.True(t, errors.Is(err, ErrFull))
	require.False(t, errors.Is(err, ErrExhausted))
}
