package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// Type parses and checks the value of an annotation. The built-in types are
// String, Bool, Int, Duration, Enum, Addrs and CIDRs; Custom makes others.
type Type struct {
	// Allowed describes the valid values for people ("an integer in
	// [1,65535]"): it appears in Events and the reference.
	Allowed string
	// Parse returns the canonical form of a valid value, or an error
	// saying why it is not valid.
	Parse func(string) (string, error)
}

// String accepts any value, including the empty one.
func String() Type {
	return Type{Allowed: "any string", Parse: func(s string) (string, error) { return s, nil }}
}

// Bool accepts "true" and "false" (canonical forms of strconv.ParseBool's
// values).
func Bool() Type {
	return Type{Allowed: `"true" or "false"`, Parse: func(s string) (string, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return "", errors.New("not a boolean")
		}
		return strconv.FormatBool(b), nil
	}}
}

// Int accepts decimal integers in [lo, hi].
func Int(lo, hi int64) Type {
	return Type{Allowed: fmt.Sprintf("an integer in [%d, %d]", lo, hi), Parse: func(s string) (string, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return "", errors.New("not an integer")
		}
		if n < lo || n > hi {
			return "", fmt.Errorf("%d is out of range", n)
		}
		return strconv.FormatInt(n, 10), nil
	}}
}

// Duration accepts Go durations ("30s", "5m") in [lo, hi].
func Duration(lo, hi time.Duration) Type {
	return Type{Allowed: fmt.Sprintf("a duration in [%v, %v] (like 30s)", lo, hi), Parse: func(s string) (string, error) {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return "", errors.New("not a duration")
		}
		if d < lo || d > hi {
			return "", fmt.Errorf("%v is out of range", d)
		}
		return d.String(), nil
	}}
}

// Enum accepts exactly one of values.
func Enum(values ...string) Type {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = strconv.Quote(v)
	}
	allowed := "one of " + strings.Join(quoted, ", ")
	return Type{Allowed: allowed, Parse: func(s string) (string, error) {
		if slices.Contains(values, s) {
			return s, nil
		}
		return "", fmt.Errorf("%q is not allowed", s)
	}}
}

// Addrs accepts a comma-separated list of IP addresses (at most one per
// family); the canonical form is sorted.
func Addrs() Type {
	return Type{Allowed: "comma-separated IP addresses, at most one IPv4 and one IPv6", Parse: func(s string) (string, error) {
		addrs, err := parseAddrs(s)
		if err != nil {
			return "", err
		}
		out := make([]string, len(addrs))
		for i, a := range addrs {
			out[i] = a.String()
		}
		return strings.Join(out, ","), nil
	}}
}

// CIDRs accepts a comma-separated list of CIDRs (host bits zero); the
// canonical form is sorted, duplicates removed.
func CIDRs() Type {
	return Type{Allowed: "comma-separated CIDRs like 10.0.0.0/8,2001:db8::/32", Parse: func(s string) (string, error) {
		ps, err := parseCIDRs(s)
		if err != nil {
			return "", err
		}
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		return strings.Join(out, ","), nil
	}}
}

// Custom returns a Type described by allowed whose parse returns the
// canonical value or an error.
func Custom(allowed string, parse func(string) (string, error)) Type {
	return Type{Allowed: allowed, Parse: parse}
}

func parseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	var v4, v6 bool
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address", f)
		}
		a = a.Unmap()
		if a.Is4() && v4 || a.Is6() && v6 {
			return nil, fmt.Errorf("more than one %s address", family(a))
		}
		v4, v6 = v4 || a.Is4(), v6 || a.Is6()
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

func parseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("%q is not a CIDR", f)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%q has host bits set (did you mean %s?)", f, p.Masked())
		}
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// Annotation declares one Service annotation a provider reads.
type Annotation struct {
	// Name is the annotation key, e.g. "example.com/load-balancer-size".
	Name string
	// Type parses and checks values.
	Type Type
	// Default is the value used when the annotation is absent; it must be
	// valid for Type. Empty with Required false means "absent" (the option
	// is left out of Spec.Options).
	Default string
	// Required makes a missing annotation an error.
	Required bool
	// CreateOnly marks options the cloud cannot change after creation: a
	// value that differs from the one the load balancer was created with
	// is an error (never silently ignored); delete and re-create the
	// Service to change it.
	CreateOnly bool
	// Doc is one or two sentences for the reference.
	Doc string
}

// Schema is the set of annotations a provider declares. Build it once with
// NewSchema; it is immutable and safe for concurrent use.
type Schema struct {
	list   []Annotation
	byName map[string]int
}

// ErrInvalidSchema is wrapped by NewSchema's errors.
var ErrInvalidSchema = errors.New("invalid annotation schema")

// NewSchema checks the declarations: names must be valid, unique annotation
// keys, types set, defaults valid. Errors wrap ErrInvalidSchema.
func NewSchema(annotations ...Annotation) (*Schema, error) {
	s := &Schema{byName: map[string]int{}}
	var errs []error
	for _, a := range annotations {
		switch {
		case !validKey(a.Name):
			errs = append(errs, fmt.Errorf("%q is not a valid annotation key (want prefix/name)", a.Name))
			continue
		case a.Type.Parse == nil:
			errs = append(errs, fmt.Errorf("%s: no Type", a.Name))
			continue
		}
		if _, dup := s.byName[a.Name]; dup {
			errs = append(errs, fmt.Errorf("%s declared twice", a.Name))
			continue
		}
		if a.Default != "" {
			canon, err := a.Type.Parse(a.Default)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: default %q: %w", a.Name, a.Default, err))
				continue
			}
			a.Default = canon
		}
		s.byName[a.Name] = len(s.list)
		s.list = append(s.list, a)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchema, errors.Join(errs...))
	}
	return s, nil
}

// MustSchema is NewSchema for package-level declarations; it panics on an
// invalid schema, which is a programming error.
func MustSchema(annotations ...Annotation) *Schema {
	s, err := NewSchema(annotations...)
	if err != nil {
		panic(err)
	}
	return s
}

func validKey(k string) bool {
	prefix, name, ok := strings.Cut(k, "/")
	if !ok || prefix == "" || name == "" || len(name) > 63 || strings.Contains(name, "/") {
		return false
	}
	for _, r := range prefix {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// Annotations returns the declarations, in declaration order.
func (s *Schema) Annotations() []Annotation { return slices.Clone(s.list) }

// Lookup returns the declaration of name.
func (s *Schema) Lookup(name string) (Annotation, bool) {
	i, ok := s.byName[name]
	if !ok {
		return Annotation{}, false
	}
	return s.list[i], true
}

// AnnotationError is one bad annotation value.
type AnnotationError struct {
	Name, Value string
	// Allowed describes the valid values.
	Allowed string
	// Reason says what is wrong.
	Reason string
}

func (e *AnnotationError) Error() string {
	if e.Value == "" && e.Reason == "required" {
		return fmt.Sprintf("annotation %s is required: %s", e.Name, e.Allowed)
	}
	return fmt.Sprintf("annotation %s=%q is invalid (%s): want %s", e.Name, e.Value, e.Reason, e.Allowed)
}

// Unwrap returns ErrInvalidAnnotation.
func (e *AnnotationError) Unwrap() error { return ErrInvalidAnnotation }

// ErrInvalidAnnotation is wrapped by every error about a bad annotation.
var ErrInvalidAnnotation = errors.New("invalid annotation")

// Parse reads svc's annotations: it returns the canonical value of every
// declared annotation that is set or has a default, or an error joining an
// *AnnotationError per bad value. Undeclared annotations are ignored.
func (s *Schema) Parse(svc *v1.Service) (map[string]string, error) {
	if s == nil {
		return map[string]string{}, nil
	}
	out := make(map[string]string, len(s.list))
	var errs []error
	for _, a := range s.list {
		raw, set := svc.Annotations[a.Name]
		if !set {
			if a.Required {
				errs = append(errs, &AnnotationError{Name: a.Name, Allowed: a.Type.Allowed, Reason: "required"})
			} else if a.Default != "" {
				out[a.Name] = a.Default
			}
			continue
		}
		canon, err := a.Type.Parse(raw)
		if err != nil {
			errs = append(errs, &AnnotationError{Name: a.Name, Value: raw, Allowed: a.Type.Allowed, Reason: err.Error()})
			continue
		}
		out[a.Name] = canon
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// CreateOnlyChanges returns an error for each create-only option whose
// desired value differs from the observed one (the value the load balancer
// was created with, as the backend reports it).
func (s *Schema) CreateOnlyChanges(observed, desired map[string]string) error {
	if s == nil {
		return nil
	}
	var errs []error
	for _, a := range s.list {
		if !a.CreateOnly {
			continue
		}
		was, hadIt := observed[a.Name]
		now, hasIt := desired[a.Name]
		if was == now && hadIt == hasIt {
			continue
		}
		errs = append(errs, &CreateOnlyError{Name: a.Name, Was: was, Now: now})
	}
	return errors.Join(errs...)
}

// CreateOnlyError reports a create-only annotation changed after creation.
type CreateOnlyError struct{ Name, Was, Now string }

func (e *CreateOnlyError) Error() string {
	return fmt.Sprintf("annotation %s changed from %q to %q, but it can only be set when the load balancer is created: restore %q, or delete and re-create the Service", e.Name, e.Was, e.Now, e.Was)
}

// Unwrap returns ErrInvalidAnnotation.
func (e *CreateOnlyError) Unwrap() error { return ErrInvalidAnnotation }

// Markdown renders the reference of the schema's annotations as a Markdown
// table, in declaration order, under the heading title.
func (s *Schema) Markdown(title string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	b.WriteString("<!-- Generated from the annotation declarations: do not edit. -->\n\n")
	b.WriteString("| Annotation | Values | Default | Changeable | Description |\n|---|---|---|---|---|\n")
	for _, a := range s.list {
		def := "(none)"
		if a.Required {
			def = "(required)"
		} else if a.Default != "" {
			def = "`" + a.Default + "`"
		}
		change := "yes"
		if a.CreateOnly {
			change = "no: create-only"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", a.Name, mdEscape(a.Type.Allowed), def, change, mdEscape(a.Doc))
	}
	return []byte(b.String())
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
