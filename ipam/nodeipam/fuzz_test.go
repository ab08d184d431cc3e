package nodeipam

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// FuzzLedgerAccounting applies random sequences of adoptions (of good,
// overlapping, wide, narrow, foreign and garbage pod CIDRs), allocations,
// cloud claims and deletions to a Ledger, and checks that the sets and the
// ownership records always agree: every used subnet is owned by exactly one
// live Node or lies in the service range, every Node's slots are owned by
// it, and a waiting Node holds nothing.
func FuzzLedgerAccounting(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 2, 0, 2, 1, 0, 1, 3, 5, 0, 4, 6, 2, 3, 0})
	f.Add([]byte{1, 0, 0, 1, 1, 0, 1, 2, 0, 1, 3, 0, 2, 0, 0, 1, 3, 0})
	f.Add([]byte{1, 0, 0, 1, 1, 0, 1, 2, 0, 1, 3, 0, 1, 4, 0, 1, 5, 0, 2, 0, 0, 1, 5, 0, 4, 1, 1})
	specs := [][]string{
		{"10.244.0.0/24", "fd00::/64"},
		{"10.244.1.0/24"},
		{"10.244.0.0/23"},   // wide: two slots
		{"10.244.2.128/25"}, // narrow
		{"10.244.3.0/24"},   // the service range
		{"192.168.0.0/24"},  // outside
		{"garbage"},         // unparsable
		{"fd00:0:0:1::/64", "10.244.1.0/24"},
		{"fd00::/62"},                      // all IPv6 slots
		{"10.244.2.0/24", "10.244.1.0/24"}, // a family twice
	}
	service := []netip.Prefix{netip.MustParsePrefix("10.244.3.0/24")}
	f.Fuzz(func(t *testing.T, ops []byte) {
		l, err := NewLedger(LedgerOptions{
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/22"), netip.MustParsePrefix("fd00::/62")},
			ServiceCIDRs: service,
		})
		if err != nil {
			t.Fatal(err)
		}
		gen := map[string]int{}
		for i := 0; i+2 < len(ops); i += 3 {
			name := fmt.Sprintf("node-%d", ops[i+1]%6)
			uid := types.UID(fmt.Sprintf("%s-%d", name, gen[name]))
			spec := specs[int(ops[i+2])%len(specs)]
			switch ops[i] % 5 {
			case 0:
				l.Adopt(name, uid, spec)
			case 1:
				cidrs, _, err := l.Allocate(name, uid)
				if err == nil {
					// New CIDRs (both families) or the ones the Node has.
					held, heldUID, ok := l.CIDRs(name)
					if !ok || heldUID != uid || !slices.Equal(held, cidrs) || len(cidrs) == 0 {
						t.Fatalf("Allocate(%s) = %v, but the ledger holds %v for %q (%v)", name, cidrs, held, heldUID, ok)
					}
				}
				if err != nil && !l.Waiting(name) {
					t.Fatalf("Allocate(%s) failed (%v) but the Node is not waiting", name, err)
				}
			case 2:
				l.Forget(name)
				gen[name]++
			case 3:
				gen[name]++ // the next operation sees a new Node of that name
			case 4:
				cidrs, _ := parseSpec(spec)
				if cidrs, err := l.Order(cidrs); err == nil {
					if problems, _ := l.Claim(name, uid, cidrs); len(problems) > 0 {
						if _, _, ok := l.CIDRs(name); ok {
							t.Fatalf("Claim(%s, %v) failed (%v) but left a record", name, cidrs, problems)
						}
					}
				}
			}
			if err := l.check(service); err != nil {
				t.Fatalf("after op %d (%v on %s): %v", i/3, ops[i:i+3], name, err)
			}
		}
	})
}
