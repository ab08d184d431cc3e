package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.0.0.1/8", "fd00::/48", "::ffff:10.0.0.0/104", "0.0.0.0/0", "::/0", "fe80::%a/64", "1.2.3.4/33", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCIDR(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || p != (netip.Prefix{}) {
				t.Fatalf("ParseCIDR(%q) = %v, %v: want the zero prefix and ErrInvalid", s, p, err)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("ParseCIDR(%q) = %v: not canonical", s, p)
		}
		if q, err := ParseCIDR(p.String()); err != nil || q != p {
			t.Fatalf("ParseCIDR(%q) round trip: %v, %v; want %v", p.String(), q, err, p)
		}
	})
}

func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8,fd00::/48", " 10.0.0.0/8 , 11.0.0.0/8", "10.0.0.0/8,10.0.0.0/16", ",", "10.0.0.0/8,,fd00::/48"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseCIDRs(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || ps != nil {
				t.Fatalf("ParseCIDRs(%q) = %v, %v", s, ps, err)
			}
			return
		}
		if len(ps) == 0 {
			t.Fatalf("ParseCIDRs(%q) returned no prefix and no error", s)
		}
		var strs []string
		for i, p := range ps {
			for _, q := range ps[:i] {
				if p.Overlaps(q) {
					t.Fatalf("ParseCIDRs(%q) returned overlapping %v and %v", s, p, q)
				}
			}
			strs = append(strs, p.String())
		}
		again, err := ParseCIDRs(strings.Join(strs, ","))
		if err != nil || len(again) != len(ps) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
		for i := range ps {
			if again[i] != ps[i] {
				t.Fatalf("round trip of %q: %v, want %v", s, again, ps)
			}
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10.0.0.10-10.0.0.20", "10.0.0.20-10.0.0.10", "10.0.0.1", "192.0.2.0/28", "2001:db8::1-2001:db8::ff", "10.0.0.1-fd00::1", "1-2-3", " - ", "fe80::1%x", "::ffff:1.2.3.4-::ffff:1.2.3.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || r != (Range{}) {
				t.Fatalf("ParseRange(%q) = %v, %v: want the zero range and ErrInvalid", s, r, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRange(%q) = %v, which does not validate: %v", s, r, err)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("ParseRange(%q) = %v, which does not contain its ends", s, r)
		}
		if q, err := ParseRange(r.String()); err != nil || q != r {
			t.Fatalf("ParseRange(%q) round trip: %v, %v; want %v", r.String(), q, err, r)
		}
	})
}

func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"10.0.0.10-10.0.0.20, 192.0.2.0/28", "10.0.0.1,10.0.0.1", "10.0.0.0/24,10.0.0.255-10.0.1.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseRanges(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || rs != nil {
				t.Fatalf("ParseRanges(%q) = %v, %v", s, rs, err)
			}
			return
		}
		for i, r := range rs {
			for _, q := range rs[:i] {
				if r.Overlaps(q) {
					t.Fatalf("ParseRanges(%q) returned overlapping %v and %v", s, r, q)
				}
			}
		}
	})
}

// cidrFuzzConfigs are the sets FuzzCIDRSet drives: small enough for a map
// model, with subnet counts below, at and above one bitmap word and node.
var cidrFuzzConfigs = []struct {
	cluster string
	bits    int
}{
	{"10.0.0.0/24", 24},      // 1
	{"10.0.0.0/20", 24},      // 16
	{"10.0.0.0/16", 22},      // 64
	{"10.0.0.0/16", 23},      // 128
	{"10.0.0.0/12", 24},      // 4096
	{"10.0.0.0/11", 24},      // 8192
	{"fd00::/52", 64},        // 4096
	{"fd00:1:2:3::/64", 80},  // 65536
	{"2001:db8::/32", 48},    // 65536
	{"fd00::ff00/120", 128},  // 256
	{"fd00:0:0:1::/63", 128}, // 2^65 would be too many: rejected, covered by NewCIDRSet
}

// FuzzCIDRSet drives random AllocateNext / Release / Occupy sequences on a
// CIDRSet and checks each result against a map model: AllocateNext returns
// the lowest free subnet (so never an allocated one), counts match, Has
// agrees, and every error is the documented one.
func FuzzCIDRSet(f *testing.F) {
	f.Add(byte(1), []byte{0, 0, 0, 0, 1, 3, 2, 5, 0, 0})
	f.Add(byte(4), []byte{3, 0, 0, 0, 7, 1, 2, 200, 8, 0, 0, 0})
	f.Add(byte(8), []byte{2, 255, 3, 17, 0, 0, 1, 255, 0})
	f.Add(byte(2), []byte{6, 1, 6, 2, 0, 5, 7, 3})
	f.Fuzz(func(t *testing.T, cfg byte, ops []byte) {
		c := cidrFuzzConfigs[int(cfg)%len(cidrFuzzConfigs)]
		cluster := netip.MustParsePrefix(c.cluster)
		s, err := NewCIDRSet(cluster, c.bits)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewCIDRSet: %v", err)
			}
			return
		}
		m := &cidrModel{set: s, used: map[uint64]bool{}, size: s.Size()}
		for len(ops) >= 2 {
			op, arg := ops[0], ops[1]
			ops = ops[2:]
			// Spread arg over the whole index space.
			idx := uint64(arg) * m.size / 256
			switch op % 8 {
			case 0, 1, 2:
				m.allocate(t)
			case 3:
				m.apply(t, s.prefix(idx), false)
			case 4:
				m.apply(t, s.prefix(idx), true)
			case 5, 6:
				// A wider prefix: up to 7 bits shorter than a subnet.
				w := min(int(op>>3)%8, c.bits-cluster.Bits())
				p := netip.PrefixFrom(s.prefix(idx).Addr(), c.bits-w).Masked()
				m.apply(t, p, op%8 == 5)
			case 7:
				// Outside the cluster or malformed: always refused.
				bad := netip.PrefixFrom(cluster.Addr(), c.bits).Masked()
				if cluster.Bits() > 0 {
					bad = netip.PrefixFrom(cluster.Addr(), cluster.Bits()-1).Masked()
				}
				if err := s.Occupy(bad); !errors.Is(err, ErrOutOfRange) && !errors.Is(err, ErrInvalid) {
					t.Fatalf("Occupy(%s) = %v, want a refusal", bad, err)
				}
			}
			m.check(t, arg)
		}
	})
}

// cidrModel is a map-based model of a CIDRSet.
type cidrModel struct {
	set  *CIDRSet
	used map[uint64]bool
	size uint64
}

func (m *cidrModel) index(p netip.Prefix) uint64 {
	return u128Of(p.Addr()).shr(m.set.shift).lo & (m.size - 1)
}

func (m *cidrModel) lowestFree() (uint64, bool) {
	if uint64(len(m.used)) == m.size {
		return 0, false
	}
	for i := uint64(0); ; i++ {
		if !m.used[i] {
			return i, true
		}
	}
}

func (m *cidrModel) allocate(t *testing.T) {
	t.Helper()
	p, err := m.set.AllocateNext()
	want, ok := m.lowestFree()
	if !ok {
		if !errors.Is(err, ErrFull) {
			t.Fatalf("AllocateNext on a full set = %v, %v; want ErrFull", p, err)
		}
		return
	}
	if err != nil || p != m.set.prefix(want) {
		t.Fatalf("AllocateNext = %v, %v; want %v", p, err, m.set.prefix(want))
	}
	m.used[want] = true
}

// apply occupies or releases p in the set and the model.
func (m *cidrModel) apply(t *testing.T, p netip.Prefix, occupy bool) {
	t.Helper()
	lo := m.index(p)
	n := uint64(1)
	if p.Bits() < m.set.subnetBits {
		n = 1 << (m.set.subnetBits - p.Bits())
	}
	var err error
	if occupy {
		err = m.set.Occupy(p)
	} else {
		err = m.set.Release(p)
	}
	if err != nil {
		t.Fatalf("occupy=%v %s: %v", occupy, p, err)
	}
	for i := lo; i < lo+n; i++ {
		if occupy {
			m.used[i] = true
		} else {
			delete(m.used, i)
		}
	}
}

func (m *cidrModel) check(t *testing.T, probe byte) {
	t.Helper()
	if got, want := m.set.Allocated(), uint64(len(m.used)); got != want {
		t.Fatalf("Allocated = %d, model has %d", got, want)
	}
	if got, want := m.set.Free(), m.size-uint64(len(m.used)); got != want {
		t.Fatalf("Free = %d, want %d", got, want)
	}
	i := uint64(probe) * m.size / 256
	if got := m.set.Has(m.set.prefix(i)); got != m.used[i] {
		t.Fatalf("Has(%s) = %v, model says %v", m.set.prefix(i), got, m.used[i])
	}
}
