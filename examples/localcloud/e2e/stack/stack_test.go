package stack

import (
	"reflect"
	"slices"
	"strings"
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

func TestParseMetrics(t *testing.T) {
	text := `# HELP ccmkit_lb_writes_total Cloud writes by kind.
# TYPE ccmkit_lb_writes_total counter
ccmkit_lb_writes_total{kind="create"} 2
ccmkit_routes_table_routes 3
ccmkit_build_info{ccmkit_version="(devel)",provider="localcloud"} 1
other_metric 7
`
	got, err := parseMetrics(text, "ccmkit_")
	if err != nil {
		t.Fatal(err)
	}
	want := []Series{
		{Name: "ccmkit_lb_writes_total", Labels: map[string]string{"kind": "create"}, Value: 2},
		{Name: "ccmkit_routes_table_routes", Labels: map[string]string{}, Value: 3},
		{Name: "ccmkit_build_info", Labels: map[string]string{"ccmkit_version": "(devel)", "provider": "localcloud"}, Value: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMetrics = %+v, want %+v", got, want)
	}
	if _, err := parseMetrics("ccmkit_x{kind=create} 1\n", "ccmkit_"); err == nil {
		t.Error("unquoted label value: no error")
	}
	if _, err := parseMetrics("ccmkit_x one\n", "ccmkit_"); err == nil {
		t.Error("a value that is no number: no error")
	}
}

func TestKubeLDFlags(t *testing.T) {
	got, err := kubeLDFlags("v0.37.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-X k8s.io/component-base/version.gitVersion=v1.37.2", "-X k8s.io/client-go/pkg/version.gitMinor=37", "-X k8s.io/component-base/version.gitMajor=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("kubeLDFlags = %q, want it to contain %q", got, want)
		}
	}
	if _, err := kubeLDFlags("v1.2.3"); err == nil {
		t.Error("kubeLDFlags(v1.2.3): no error")
	}
}
