package ipam

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// cmpNetip compares netip values by their comparable representation.
var cmpNetip = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func rng(first, last string) Range {
	return Range{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last)}
}

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "192.0.2.7/32", want: "192.0.2.7/32"},
		{in: "fd00::/48", want: "fd00::/48"},
		{in: "2001:DB8::/32", want: "2001:db8::/32"},
		{in: "10.0.0.1/8", wantErr: true},     // host bits
		{in: "010.0.0.0/8", wantErr: true},    // leading zero
		{in: "10.0.0.0", wantErr: true},       // no length
		{in: "10.0.0.0/33", wantErr: true},    // too long
		{in: "10.0.0.0/-1", wantErr: true},    // negative
		{in: "fe80::%eth0/64", wantErr: true}, // zone
		{in: "::ffff:10.0.0.0/104", wantErr: true},
		{in: " 10.0.0.0/8", wantErr: true},
		{in: "", wantErr: true},
		{in: "10.0.0.0/8,", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCIDR(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalid)
				require.Equal(t, netip.Prefix{}, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.String())
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8,fd00::/48", want: []string{"10.0.0.0/8", "fd00::/48"}},
		{in: " 10.0.0.0/8 , fd00::/48 ", want: []string{"10.0.0.0/8", "fd00::/48"}},
		{in: "10.0.0.0/8,11.0.0.0/8", want: []string{"10.0.0.0/8", "11.0.0.0/8"}},
		{in: "", wantErr: true},
		{in: " ", wantErr: true},
		{in: "10.0.0.0/8,", wantErr: true},
		{in: ",10.0.0.0/8", wantErr: true},
		{in: "10.0.0.0/8,10.1.0.0/16", wantErr: true}, // overlap
		{in: "10.0.0.0/8,10.0.0.0/8", wantErr: true},  // duplicate
		{in: "10.0.0.0/8;fd00::/48", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCIDRs(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalid)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			var gotS []string
			for _, p := range got {
				gotS = append(gotS, p.String())
			}
			if diff := cmp.Diff(tt.want, gotS); diff != "" {
				t.Errorf("ParseCIDRs(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    Range
		wantErr bool
	}{
		{in: "10.0.0.10-10.0.0.20", want: rng("10.0.0.10", "10.0.0.20")},
		{in: " 10.0.0.10 - 10.0.0.20 ", want: rng("10.0.0.10", "10.0.0.20")},
		{in: "10.0.0.10-10.0.0.10", want: rng("10.0.0.10", "10.0.0.10")},
		{in: "10.0.0.10", want: rng("10.0.0.10", "10.0.0.10")},
		{in: "192.0.2.0/28", want: rng("192.0.2.0", "192.0.2.15")},
		{in: "192.0.2.9/32", want: rng("192.0.2.9", "192.0.2.9")},
		{in: "0.0.0.0/0", want: rng("0.0.0.0", "255.255.255.255")},
		{in: "2001:db8::1-2001:db8::ff", want: rng("2001:db8::1", "2001:db8::ff")},
		{in: "2001:db8::/120", want: rng("2001:db8::", "2001:db8::ff")},
		{in: "2001:db8::/64", want: rng("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff")},
		{in: "10.0.0.20-10.0.0.10", wantErr: true},  // reversed
		{in: "10.0.0.1-2001:db8::1", wantErr: true}, // mixed
		{in: "10.0.0.1-", wantErr: true},
		{in: "-10.0.0.1", wantErr: true},
		{in: "10.0.0.1-10.0.0.2-10.0.0.3", wantErr: true},
		{in: "10.0.0.1/24", wantErr: true}, // host bits
		{in: "010.0.0.1", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "fe80::1%eth0-fe80::2%eth0", wantErr: true},
		{in: "::ffff:10.0.0.1", wantErr: true},
		{in: "", wantErr: true},
		{in: "  ", wantErr: true},
		{in: "10.0.0.1,10.0.0.2", wantErr: true},
		{in: "pool", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRange(tt.in)
			if tt.wantErr {
				require.ErrorIs(t, err, ErrInvalid)
				require.Equal(t, Range{}, got)
				return
			}
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tt.in, diff)
			}
			require.NoError(t, got.Validate())
		})
	}
}

func TestParseRanges(t *testing.T) {
	got, err := ParseRanges("10.0.0.10-10.0.0.20, 192.0.2.0/28,2001:db8::/120")
	require.NoError(t, err)
	want := []Range{rng("10.0.0.10", "10.0.0.20"), rng("192.0.2.0", "192.0.2.15"), rng("2001:db8::", "2001:db8::ff")}
	if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
		t.Errorf("ParseRanges (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "10.0.0.1,", "10.0.0.1-10.0.0.9,10.0.0.5", "10.0.0.0/24,10.0.0.255-10.0.1.3", "x"} {
		_, err := ParseRanges(bad)
		require.ErrorIs(t, err, ErrInvalid, "input %q", bad)
	}
}

func TestRange(t *testing.T) {
	r := rng("10.0.0.10", "10.0.0.20")
	require.True(t, r.Contains(netip.MustParseAddr("10.0.0.10")))
	require.True(t, r.Contains(netip.MustParseAddr("10.0.0.20")))
	require.False(t, r.Contains(netip.MustParseAddr("10.0.0.21")))
	require.False(t, r.Contains(netip.MustParseAddr("::ffff:10.0.0.15")))
	require.False(t, r.Contains(netip.Addr{}))
	require.True(t, r.Overlaps(rng("10.0.0.20", "10.0.0.30")))
	require.False(t, r.Overlaps(rng("10.0.0.21", "10.0.0.30")))
	require.False(t, r.Overlaps(rng("::", "::ffff:ffff")))
	require.Equal(t, "10.0.0.10-10.0.0.20", r.String())
	require.Equal(t, "10.0.0.10", rng("10.0.0.10", "10.0.0.10").String())
	require.Equal(t, rng("fd00::", "fd00::ff"), PrefixRange(netip.MustParsePrefix("fd00::/120")))
	require.Equal(t, Range{}, PrefixRange(netip.MustParsePrefix("fd00::1/120")))
	require.ErrorIs(t, Range{}.Validate(), ErrInvalid)
}
