package lb_test

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ccmkit/ccmkit/lb"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testSchema = lb.MustSchema(
	lb.Annotation{Name: "example.com/size", Type: lb.Enum("small", "large"), Default: "small", CreateOnly: true, Doc: "Size."},
	lb.Annotation{Name: "example.com/idle-timeout", Type: lb.Duration(time.Second, time.Hour), Default: "60s", Doc: "Idle timeout."},
	lb.Annotation{Name: "example.com/proxy-protocol", Type: lb.Bool(), Doc: "PROXY protocol | v2."},
	lb.Annotation{Name: "example.com/weight", Type: lb.Int(1, 100), Doc: "Weight."},
)

func svcWith(ann map[string]string) *v1.Service {
	return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Annotations: ann}}
}

func TestSchemaParse(t *testing.T) {
	got, err := testSchema.Parse(svcWith(map[string]string{
		"example.com/idle-timeout":   "1m30s",
		"example.com/proxy-protocol": "1",
		"example.com/other":          "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"example.com/size": "small", "example.com/idle-timeout": "1m30s", "example.com/proxy-protocol": "true"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestSchemaParseErrorsNameTheAnnotation(t *testing.T) {
	_, err := testSchema.Parse(svcWith(map[string]string{
		"example.com/size":   "huge",
		"example.com/weight": "0",
	}))
	if !errors.Is(err, lb.ErrInvalidAnnotation) {
		t.Fatalf("error %v does not wrap ErrInvalidAnnotation", err)
	}
	var ae *lb.AnnotationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v has no *AnnotationError", err)
	}
	// Both bad values are reported, each with what is allowed.
	for _, want := range []string{`example.com/size="huge"`, `one of "small", "large"`, `example.com/weight="0"`, "[1, 100]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestNewSchemaRejects(t *testing.T) {
	for name, a := range map[string]lb.Annotation{
		"no prefix":   {Name: "size", Type: lb.String()},
		"no type":     {Name: "example.com/size"},
		"bad default": {Name: "example.com/size", Type: lb.Int(1, 2), Default: "3"},
		"upper case":  {Name: "Example.com/size", Type: lb.String()},
	} {
		if _, err := lb.NewSchema(a); !errors.Is(err, lb.ErrInvalidSchema) {
			t.Errorf("%s: NewSchema error = %v, want ErrInvalidSchema", name, err)
		}
	}
	a := lb.Annotation{Name: "example.com/x", Type: lb.String()}
	if _, err := lb.NewSchema(a, a); !errors.Is(err, lb.ErrInvalidSchema) {
		t.Errorf("duplicate: error = %v, want ErrInvalidSchema", err)
	}
}

func TestCreateOnlyChanges(t *testing.T) {
	err := testSchema.CreateOnlyChanges(map[string]string{"example.com/size": "small"}, map[string]string{"example.com/size": "large"})
	var co *lb.CreateOnlyError
	if !errors.As(err, &co) || co.Name != "example.com/size" {
		t.Fatalf("CreateOnlyChanges = %v, want a *CreateOnlyError for example.com/size", err)
	}
	if err := testSchema.CreateOnlyChanges(map[string]string{"example.com/size": "small", "example.com/weight": "1"}, map[string]string{"example.com/size": "small", "example.com/weight": "5"}); err != nil {
		t.Errorf("a mutable change is not a create-only error: %v", err)
	}
}

func TestTypesCanonicalize(t *testing.T) {
	for _, tc := range []struct {
		typ      lb.Type
		in, want string
	}{
		{lb.CIDRs(), " 10.0.0.0/8, 192.168.0.0/16,10.0.0.0/8", "10.0.0.0/8,192.168.0.0/16"},
		{lb.Addrs(), "2001:db8::1,192.0.2.1", "192.0.2.1,2001:db8::1"},
		{lb.Duration(0, time.Hour), "90s", "1m30s"},
		{lb.Int(-5, 5), " -3", "-3"},
	} {
		got, err := tc.typ.Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s: Parse(%q) = %q, %v; want %q", tc.typ.Allowed, tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		typ lb.Type
		in  string
	}{
		{lb.CIDRs(), "10.0.0.1/8"},
		{lb.CIDRs(), "nope"},
		{lb.Addrs(), "192.0.2.1,192.0.2.2"},
		{lb.Addrs(), "fe80::1%eth0"},
		{lb.Bool(), "yes"},
	} {
		if got, err := tc.typ.Parse(tc.in); err == nil {
			t.Errorf("%s: Parse(%q) = %q, want an error", tc.typ.Allowed, tc.in, got)
		}
	}
}

// TestAnnotationsReference keeps ANNOTATIONS.md (go generate) current.
func TestAnnotationsReference(t *testing.T) {
	got := lb.Annotations.Markdown(lb.AnnotationsTitle)
	if *update {
		if err := os.WriteFile("ANNOTATIONS.md", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("ANNOTATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("ANNOTATIONS.md is stale; run go generate ./lb (-file +declarations):\n%s", diff)
	}
}

func TestMarkdownEscapesPipes(t *testing.T) {
	md := string(testSchema.Markdown("t"))
	if !strings.Contains(md, `PROXY protocol \| v2.`) {
		t.Errorf("a '|' in a doc must be escaped:\n%s", md)
	}
}

func FuzzAnnotationTypes(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.1,2001:db8::1", "1m", "true", " 7 ", "::ffff:1.2.3.4", "1.2.3.4/33", ",,,"} {
		f.Add(s)
	}
	types := []lb.Type{lb.CIDRs(), lb.Addrs(), lb.Duration(0, time.Hour), lb.Bool(), lb.Int(0, 10), lb.Enum("a", "b")}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range types {
			canon, err := typ.Parse(s)
			if err != nil {
				continue
			}
			// The canonical form is a fixed point.
			again, err := typ.Parse(canon)
			if err != nil || again != canon {
				t.Fatalf("%s: Parse(%q) = %q, and Parse of that = %q, %v", typ.Allowed, s, canon, again, err)
			}
		}
	})
}
