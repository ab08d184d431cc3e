package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
)

// InstancesFixture is a backend under test and what it is known to hold.
type InstancesFixture struct {
	// Source is the backend. If it implements instances.Lister, the list
	// cases run too.
	Source instances.Source
	// Known are instances the backend holds, as it should report them. They
	// must include at least one with a NodeName; the suite compares every
	// field: ID, NodeName, ProviderID, Type, Zone, Region, State, Addresses,
	// PodCIDRs and Labels (nil and empty are equal).
	Known []instances.Instance
	// MissingID and MissingNodeName name an instance and a node the backend
	// does not have.
	MissingID, MissingNodeName string
	// FailNext, when set, makes the backend's SDK (or the in-memory stand-in
	// for it) fail its next call with f, as the cloud's API would. The
	// error-classification cases run only when it is set.
	FailNext func(f SDKFailure)
}

// SDKFailure is a failure of the cloud's API, for InstancesFixture.FailNext:
// an HTTP-like status code and, when positive, a Retry-After.
type SDKFailure struct {
	StatusCode int
	RetryAfter time.Duration
}

// instancesSuite drives instancesCases.
var instancesSuite = suite[InstancesFixture]{validate: checkFixture, cases: instancesCases}

// instancesNeedFailNext skips the error-classification cases without a
// FailNext hook.
func instancesNeedFailNext(f InstancesFixture) string { return needsFailNext(f.FailNext) }

var instancesCases = []conformanceCase[InstancesFixture]{
	{
		name: "lookup-by-id",
		rule: "Lookup with Key.ID returns that instance with every field the cloud holds (provider ID, addresses, pod CIDRs and labels included)",
		check: func(ctx context.Context, f InstancesFixture) error {
			var errs []error
			for _, want := range f.Known {
				got, err := f.Source.Lookup(ctx, instances.Key{ID: want.ID})
				if err != nil {
					errs = append(errs, fmt.Errorf("Lookup(id %q): %w", want.ID, err))
					continue
				}
				errs = append(errs, sameInstance(want, got))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "lookup-by-node-name",
		rule: "Lookup with only Key.NodeName finds the instance running that node (used before the node has a providerID)",
		check: func(ctx context.Context, f InstancesFixture) error {
			var errs []error
			named := 0
			for _, want := range f.Known {
				if want.NodeName == "" || want.State == instances.StateTerminated {
					continue
				}
				named++
				got, err := f.Source.Lookup(ctx, instances.Key{NodeName: want.NodeName})
				if err != nil {
					errs = append(errs, fmt.Errorf("Lookup(node %q): %w", want.NodeName, err))
					continue
				}
				errs = append(errs, sameInstance(want, got))
			}
			if named == 0 {
				errs = append(errs, errors.New("fixture has no named, non-terminated instance"))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "id-is-authoritative",
		rule: "when Key has both ID and NodeName, the ID decides: a node name can be reused by a new instance",
		check: func(ctx context.Context, f InstancesFixture) error {
			if len(f.Known) < 2 {
				return errors.New("fixture needs at least two instances")
			}
			a, b := f.Known[0], f.Known[1]
			got, err := f.Source.Lookup(ctx, instances.Key{ID: a.ID, NodeName: b.NodeName})
			if err != nil {
				return fmt.Errorf("Lookup(id %q, node %q): %w", a.ID, b.NodeName, err)
			}
			if got == nil || got.ID != a.ID {
				return fmt.Errorf("Lookup(id %q, node %q) returned %v, want instance %q", a.ID, b.NodeName, idOf(got), a.ID)
			}
			return nil
		},
	},
	{
		name: "missing-is-not-found",
		rule: "a missing instance is an error wrapping cloudcall.ErrNotFound and no instance, by ID and by name: never (nil, nil), never an unclassified error",
		check: func(ctx context.Context, f InstancesFixture) error {
			var errs []error
			for _, key := range []instances.Key{{ID: f.MissingID}, {NodeName: f.MissingNodeName}} {
				got, err := f.Source.Lookup(ctx, key)
				if !errors.Is(err, cloudcall.ErrNotFound) {
					errs = append(errs, fmt.Errorf("Lookup(%s) error = %v, want one wrapping cloudcall.ErrNotFound", key, err))
				}
				if got != nil {
					errs = append(errs, fmt.Errorf("Lookup(%s) returned instance %q with its error", key, got.ID))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "cancelled-context",
		rule: "a call with a cancelled context returns an error wrapping context.Canceled, not a result: controllers cancel on shutdown",
		check: func(ctx context.Context, f InstancesFixture) error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := f.Source.Lookup(ctx, instances.Key{ID: f.Known[0].ID})
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("lookup with cancelled context: error = %v, want context.Canceled", err)
			}
			return nil
		},
	},
	{
		name: "list-matches-lookup",
		rule: "List (when implemented) returns every known instance once, with the same fields as Lookup, and no nil entries",
		check: func(ctx context.Context, f InstancesFixture) error {
			l, ok := f.Source.(instances.Lister)
			if !ok {
				return nil
			}
			list, err := l.List(ctx)
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			var errs []error
			seen := map[string]*instances.Instance{}
			for i, inst := range list {
				if inst == nil {
					errs = append(errs, fmt.Errorf("list()[%d] is nil", i))
					continue
				}
				if _, dup := seen[inst.ID]; dup {
					errs = append(errs, fmt.Errorf("list returned instance %q twice", inst.ID))
				}
				seen[inst.ID] = inst
			}
			for _, want := range f.Known {
				got, ok := seen[want.ID]
				if !ok {
					errs = append(errs, fmt.Errorf("list is missing instance %q", want.ID))
					continue
				}
				errs = append(errs, sameInstance(want, got))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "sdk-404-is-not-found",
		rule: "a 404 from the cloud for the instance asked about is an error wrapping cloudcall.ErrNotFound and no instance",
		skip: instancesNeedFailNext,
		check: func(ctx context.Context, f InstancesFixture) error {
			f.FailNext(SDKFailure{StatusCode: 404})
			got, err := f.Source.Lookup(ctx, instances.Key{ID: f.Known[0].ID})
			var errs []error
			if !errors.Is(err, cloudcall.ErrNotFound) {
				errs = append(errs, fmt.Errorf("lookup after a 404: error = %v, want one wrapping cloudcall.ErrNotFound", err))
			}
			if got != nil {
				errs = append(errs, fmt.Errorf("lookup after a 404 returned instance %q", got.ID))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "sdk-429-is-throttled",
		rule: "a 429 with Retry-After is classified throttled (cloudcall.Throttled) with that Retry-After, by Lookup and List, so the budget waits as the cloud asked",
		skip: instancesNeedFailNext,
		check: func(ctx context.Context, f InstancesFixture) error {
			return classifiesAs(ctx, f, SDKFailure{StatusCode: 429, RetryAfter: 7 * time.Second}, cloudcall.ClassThrottled)
		},
	},
	{
		name: "sdk-5xx-is-transient",
		rule: "a 5xx without Retry-After is classified transient (cloudcall.Transient), by Lookup and List, so the budget retries it",
		skip: instancesNeedFailNext,
		check: func(ctx context.Context, f InstancesFixture) error {
			return errors.Join(
				classifiesAs(ctx, f, SDKFailure{StatusCode: 500}, cloudcall.ClassTransient),
				classifiesAs(ctx, f, SDKFailure{StatusCode: 503}, cloudcall.ClassTransient))
		},
	},
	{
		name: "sdk-503-with-retry-after-is-throttled",
		rule: "a 503 with Retry-After is classified throttled with that Retry-After: the cloud said when to come back",
		skip: instancesNeedFailNext,
		check: func(ctx context.Context, f InstancesFixture) error {
			return classifiesAs(ctx, f, SDKFailure{StatusCode: 503, RetryAfter: 5 * time.Second}, cloudcall.ClassThrottled)
		},
	},
	{
		name: "concurrent-lookups",
		rule: "Lookup is safe for concurrent use and gives every caller the same answer (run with -race)",
		check: func(ctx context.Context, f InstancesFixture) error {
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				errs []error
			)
			for i := range 16 {
				want := f.Known[i%len(f.Known)]
				wg.Go(func() {
					got, err := f.Source.Lookup(ctx, instances.Key{ID: want.ID})
					if err == nil {
						err = sameInstance(want, got)
					}
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				})
			}
			wg.Wait()
			return errors.Join(errs...)
		},
	},
}

// classifiesAs checks that Lookup (and List, when implemented) fail with an
// error of class want, and the failure's Retry-After when it has one.
func classifiesAs(ctx context.Context, f InstancesFixture, fail SDKFailure, want cloudcall.Class) error {
	calls := []struct {
		name string
		call func() (bool, error)
	}{{"Lookup", func() (bool, error) {
		inst, err := f.Source.Lookup(ctx, instances.Key{ID: f.Known[0].ID})
		return inst != nil, err
	}}}
	if l, ok := f.Source.(instances.Lister); ok {
		calls = append(calls, struct {
			name string
			call func() (bool, error)
		}{"List", func() (bool, error) {
			list, err := l.List(ctx)
			return list != nil, err
		}})
	}
	var errs []error
	for _, c := range calls {
		f.FailNext(fail)
		result, err := c.call()
		if got := cloudcall.Classify(err); got != want {
			errs = append(errs, fmt.Errorf("%s after a %d: class %v (error %v), want %v", c.name, fail.StatusCode, got, err, want))
			continue
		}
		if result {
			errs = append(errs, fmt.Errorf("%s after a %d returned a result with its error", c.name, fail.StatusCode))
		}
		if fail.RetryAfter > 0 {
			if ra, _ := cloudcall.RetryAfter(err); ra != fail.RetryAfter {
				errs = append(errs, fmt.Errorf("%s after a %d with Retry-After %s: cloudcall.RetryAfter = %s", c.name, fail.StatusCode, fail.RetryAfter, ra))
			}
		}
	}
	return errors.Join(errs...)
}

var compareInstances = cmp.Options{cmpopts.EquateEmpty()}

func sameInstance(want instances.Instance, got *instances.Instance) error {
	if got == nil {
		return fmt.Errorf("instance %q: got nil", want.ID)
	}
	if d := cmp.Diff(want, *got, compareInstances); d != "" {
		return fmt.Errorf("instance %q mismatch (-want +got):\n%s", want.ID, d)
	}
	return nil
}

func idOf(inst *instances.Instance) string {
	if inst == nil {
		return "<nil>"
	}
	return inst.ID
}

func checkFixture(f InstancesFixture) error {
	switch {
	case f.Source == nil:
		return errors.New("conformance: fixture has no Source")
	case len(f.Known) == 0:
		return errors.New("conformance: fixture has no Known instances")
	case f.MissingID == "" || f.MissingNodeName == "":
		return errors.New("conformance: fixture needs MissingID and MissingNodeName")
	}
	return nil
}

// TestInstances runs every instances case against f (the error
// classification cases only when f.FailNext is set) and returns every
// violation joined, each prefixed with the case name and rule.
func TestInstances(ctx context.Context, f InstancesFixture) error {
	return instancesSuite.test(ctx, func() InstancesFixture { return f })
}

// RunInstances runs every instances case as a subtest, each with a fresh
// fixture from newFixture; the error classification cases are skipped when
// the fixture has no FailNext.
func RunInstances(t *testing.T, newFixture func(t *testing.T) InstancesFixture) {
	t.Helper()
	instancesSuite.run(t, newFixture)
}
