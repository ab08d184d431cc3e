package provider_test

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ccmkit/ccmkit/examples/localcloud/provider"
)

var update = flag.Bool("update", false, "rewrite ANNOTATIONS.md")

// TestAnnotationsReference keeps ANNOTATIONS.md, the provider's annotation
// reference, generated from the declarations (go test -run
// TestAnnotationsReference -update rewrites it).
func TestAnnotationsReference(t *testing.T) {
	got := provider.Annotations.Markdown("localcloud load-balancer annotations")
	got = append(got, []byte("\nccmkit's own annotations (addresses, pools) are in lb/ANNOTATIONS.md at the repository's root.\n")...)
	if *update {
		if err := os.WriteFile("ANNOTATIONS.md", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("ANNOTATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("ANNOTATIONS.md is stale (-file +generated); run go test -run TestAnnotationsReference -update:\n%s", d)
	}
}
