package instances_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ccmkit/ccmkit/instances"
)

func TestParseProviderID(t *testing.T) {
	for in, want := range map[string]string{
		"fake://i-1":                "i-1",
		"fake:///zone-a/i-0abc":     "/zone-a/i-0abc",
		"fake://proj/zone/instance": "proj/zone/instance",
	} {
		got, err := instances.ParseProviderID("fake", in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
		assert.Equal(t, in, instances.FormatProviderID("fake", got))
	}
	for _, in := range []string{"", "fake", "fake:/i-1", "other://i-1", "fake://", "fake:// i", "fake://a\tb", "fake://\xff"} {
		_, err := instances.ParseProviderID("fake", in)
		assert.ErrorIs(t, err, instances.ErrInvalidProviderID, "%q", in)
	}
	_, err := instances.ParseProviderID("", "://x")
	assert.ErrorIs(t, err, instances.ErrInvalidProviderID)
}

func FuzzParseProviderID(f *testing.F) {
	for _, s := range []string{"fake://i-1", "fake:///z/i", "fake://", "x://y", "fake://a b", "fake://\xff", "fake://fake://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := instances.ParseProviderID("fake", s)
		if err != nil {
			return
		}
		if id == "" {
			t.Fatalf("ParseProviderID(%q) accepted an empty ID", s)
		}
		if got := instances.FormatProviderID("fake", id); got != s {
			t.Fatalf("Format(Parse(%q)) = %q", s, got)
		}
	})
}

func FuzzProviderIDRoundTrip(f *testing.F) {
	for _, s := range []string{"i-1", "/zone/i-2", "a:b", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		got, err := instances.ParseProviderID("fake", instances.FormatProviderID("fake", id))
		if err != nil {
			return // not a valid ID: rejected with an error, not a panic
		}
		if got != id {
			t.Fatalf("round trip of %q gave %q", id, got)
		}
	})
}
