package stack

import (
	"slices"
	"testing"
)

func TestMergeFlags(t *testing.T) {
	base := []string{"--cloud-config=/etc/c.json", "--leader-elect", "--controllers=*,load-balancer-reaper"}
	got := mergeFlags(base, "--cloud-config=/tmp/c.json", "--leader-elect=false", "--v=2")
	want := []string{"--cloud-config=/tmp/c.json", "--leader-elect=false", "--controllers=*,load-balancer-reaper", "--v=2"}
	if !slices.Equal(got, want) {
		t.Errorf("mergeFlags = %q, want %q", got, want)
	}
	if base[0] != "--cloud-config=/etc/c.json" {
		t.Errorf("mergeFlags changed its base: %q", base)
	}
}
