package lb_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/lb"
)

// TestFrozenFormats pins the name and ownership-key formats: changing either
// in a later version would orphan every load balancer made by this one.
func TestFrozenFormats(t *testing.T) {
	uid := types.UID("0b9c6a2e-5f1d-4c1e-9f3a-7d2b8e4c6a10")
	if got, want := lb.Name(uid), "ccmkit-0b9c6a2e5f1d4c1e9f3a7d2b8e4c6a10"; got != want {
		t.Errorf("Name = %q, want %q (the format is frozen)", got, want)
	}
	k := lb.Key{Cluster: "prod-eu/1", UID: uid}
	if got, want := k.String(), "ccmkit-v1/prod-eu/1/0b9c6a2e-5f1d-4c1e-9f3a-7d2b8e4c6a10"; got != want {
		t.Errorf("Key.String = %q, want %q (the format is frozen)", got, want)
	}
	back, err := lb.ParseKey(k.String())
	if err != nil || back != k {
		t.Errorf("ParseKey(%q) = %v, %v; want %v", k.String(), back, err, k)
	}
	if (lb.Key{}).String() != "" {
		t.Errorf("zero Key must render empty")
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, s := range []string{"", "ccmkit-v1/", "ccmkit-v1/only", "ccmkit-v1//uid", "ccmkit-v1/c/", "v0/c/u", "kubernetes/uid"} {
		if _, err := lb.ParseKey(s); !errors.Is(err, lb.ErrInvalidKey) {
			t.Errorf("ParseKey(%q) error = %v, want ErrInvalidKey", s, err)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("ccmkit-v1/prod/0b9c6a2e-5f1d-4c1e-9f3a-7d2b8e4c6a10")
	f.Add("ccmkit-v1/a/b/c")
	f.Add("ccmkit-v1//")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := lb.ParseKey(s)
		if err != nil {
			return
		}
		if k.Cluster == "" || k.UID == "" {
			t.Fatalf("ParseKey(%q) = %+v with an empty part", s, k)
		}
		if diff := cmp.Diff(s, k.String()); diff != "" {
			t.Fatalf("round trip (-in +out):\n%s", diff)
		}
	})
}
