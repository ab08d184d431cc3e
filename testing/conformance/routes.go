//lint:file-ignore ST1005 violation messages start with the Backend method they name (List, Create, Delete, Apply)

package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/routes"
)

// RoutesFixture is a route backend under test, over an empty table (but for
// foreign routes).
type RoutesFixture struct {
	// Backend is the backend. If it implements routes.Applier, the batch
	// cases run too.
	Backend routes.Backend
	// Cluster is the cluster name the suite creates routes for.
	Cluster string
	// Foreign are routes the table holds that Cluster does not own (other
	// clusters', hand-made): List must never return them.
	Foreign []routes.Route
	// Limit, when positive, is the table's capacity, foreign routes
	// included; the full-table case then fills it.
	Limit int
	// FailNext, when set, makes the backend's SDK fail its next call with
	// f; the error-classification cases run only when it is set.
	FailNext func(f SDKFailure)
}

// routesSuite drives routesCases.
var routesSuite = suite[RoutesFixture]{validate: checkRoutesFixture, cases: routesCases}

// routesNeedFailNext skips the error-classification case without a
// FailNext hook.
func routesNeedFailNext(f RoutesFixture) string { return needsFailNext(f.FailNext) }

// testRoute returns the i-th test route (IPv6 when v6): a /30 of
// 10.250.0.0/16 or a /64 of fdcc::/48, to node conformance-node-<i>.
func testRoute(cluster string, i int, v6 bool) routes.Route {
	node := types.NodeName(fmt.Sprintf("conformance-node-%d", i))
	dst := netip.MustParsePrefix(fmt.Sprintf("10.250.%d.%d/30", (i>>6)&255, (i&63)*4))
	addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
	if v6 {
		dst = netip.MustParsePrefix(fmt.Sprintf("fdcc:0:0:%x::/64", i))
		addr = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))
	}
	addrs := []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: addr.String()}, {Type: v1.NodeHostName, Address: string(node)}}
	return routes.Route{
		Name:          routes.Name(cluster, "uid-"+string(node), dst),
		TargetNode:    node,
		Destination:   dst,
		NextHop:       addr,
		NodeAddresses: addrs,
	}
}

// sameListed checks that got is want as a backend lists it: name, target
// and destination exact; the stored addresses exact when AddressesStored;
// the next hop, when reported, the one given.
func sameListed(want routes.Route, got routes.Route) error {
	var errs []error
	if got.Name != want.Name || got.TargetNode != want.TargetNode || got.Destination != want.Destination {
		errs = append(errs, fmt.Errorf("listed %v, want %v", got, want))
	}
	if got.Blackhole {
		errs = append(errs, fmt.Errorf("route %s listed as a blackhole", got.Name))
	}
	if got.AddressesStored {
		if d := cmp.Diff(want.NodeAddresses, got.NodeAddresses, cmpopts.EquateEmpty()); d != "" {
			errs = append(errs, fmt.Errorf("route %s: stored addresses differ from those it was created with (-want +got):\n%s", got.Name, d))
		}
	} else if got.NextHop.IsValid() && got.NextHop != want.NextHop {
		errs = append(errs, fmt.Errorf("route %s: next hop %s, created with %s", got.Name, got.NextHop, want.NextHop))
	}
	return errors.Join(errs...)
}

func listByName(ctx context.Context, f RoutesFixture) (map[string]routes.Route, error) {
	list, err := f.Backend.List(ctx, f.Cluster)
	if err != nil {
		return nil, fmt.Errorf("List: %w", err)
	}
	out := make(map[string]routes.Route, len(list))
	var errs []error
	for _, r := range list {
		if _, dup := out[r.Name]; dup {
			errs = append(errs, fmt.Errorf("List returned route %q twice", r.Name))
		}
		out[r.Name] = r
	}
	return out, errors.Join(errs...)
}

var routesCases = []conformanceCase[RoutesFixture]{
	{
		name: "create-then-list",
		rule: "a created route is listed with its name, target and destination, and with exactly the Node addresses it was created with when the backend stores them (AddressesStored), else with its next hop or none",
		check: func(ctx context.Context, f RoutesFixture) error {
			want := []routes.Route{testRoute(f.Cluster, 1, false), testRoute(f.Cluster, 2, false)}
			var errs []error
			for _, r := range want {
				if err := f.Backend.Create(ctx, f.Cluster, r); err != nil {
					return fmt.Errorf("Create(%v): %w", r, err)
				}
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return err
			}
			for _, r := range want {
				g, ok := got[r.Name]
				if !ok {
					errs = append(errs, fmt.Errorf("route %s not listed after Create", r.Name))
					continue
				}
				errs = append(errs, sameListed(r, g))
			}
			if len(got) != len(want) {
				errs = append(errs, fmt.Errorf("List returned %d routes, want %d", len(got), len(want)))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "dual-stack",
		rule: "the two routes of a dual-stack node (one name hint, two families) are both kept: their names do not collide",
		check: func(ctx context.Context, f RoutesFixture) error {
			v4, v6 := testRoute(f.Cluster, 3, false), testRoute(f.Cluster, 3, true)
			for _, r := range []routes.Route{v4, v6} {
				if err := f.Backend.Create(ctx, f.Cluster, r); err != nil {
					return fmt.Errorf("Create(%v): %w", r, err)
				}
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return err
			}
			return errors.Join(sameListed(v4, got[v4.Name]), sameListed(v6, got[v6.Name]))
		},
	},
	{
		name: "foreign-routes-not-listed",
		rule: "List returns this cluster's routes only: foreign routes (other clusters', hand-made) never appear, so nothing ccmkit or upstream does can delete them",
		check: func(ctx context.Context, f RoutesFixture) error {
			if err := f.Backend.Create(ctx, f.Cluster, testRoute(f.Cluster, 4, false)); err != nil {
				return fmt.Errorf("Create: %w", err)
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return err
			}
			var errs []error
			for _, fr := range f.Foreign {
				if _, listed := got[fr.Name]; listed {
					errs = append(errs, fmt.Errorf("foreign route %s listed", fr.Name))
				}
			}
			for _, r := range got {
				if slices.ContainsFunc(f.Foreign, func(fr routes.Route) bool { return fr.Destination == r.Destination }) {
					errs = append(errs, fmt.Errorf("listed route %s has a foreign route's destination %s", r.Name, r.Destination))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "delete",
		rule: "Delete removes the route as List returned it; deleting it again is not an error (nil or cloudcall.ErrNotFound)",
		check: func(ctx context.Context, f RoutesFixture) error {
			r := testRoute(f.Cluster, 5, false)
			if err := f.Backend.Create(ctx, f.Cluster, r); err != nil {
				return fmt.Errorf("Create: %w", err)
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return err
			}
			listed, ok := got[r.Name]
			if !ok {
				return fmt.Errorf("route %s not listed after Create", r.Name)
			}
			if err := f.Backend.Delete(ctx, f.Cluster, listed); err != nil {
				return fmt.Errorf("Delete: %w", err)
			}
			got, err = listByName(ctx, f)
			if err != nil {
				return err
			}
			var errs []error
			if _, still := got[r.Name]; still {
				errs = append(errs, fmt.Errorf("route %s still listed after Delete", r.Name))
			}
			if err := f.Backend.Delete(ctx, f.Cluster, listed); err != nil && !errors.Is(err, cloudcall.ErrNotFound) {
				errs = append(errs, fmt.Errorf("second Delete: %w, want nil or cloudcall.ErrNotFound", err))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "create-is-idempotent",
		rule: "creating a route that exists with the same destination and target is not an error and leaves one route (a retried create after a lost answer)",
		check: func(ctx context.Context, f RoutesFixture) error {
			r := testRoute(f.Cluster, 6, false)
			for i := range 2 {
				if err := f.Backend.Create(ctx, f.Cluster, r); err != nil {
					return fmt.Errorf("Create #%d: %w", i+1, err)
				}
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return err
			}
			if len(got) != 1 {
				return fmt.Errorf("List returned %d routes after creating one twice, want 1", len(got))
			}
			return nil
		},
	},
	{
		name: "cancelled-context",
		rule: "a call with a cancelled context returns an error wrapping context.Canceled and changes nothing",
		check: func(ctx context.Context, f RoutesFixture) error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			var errs []error
			if _, err := f.Backend.List(cctx, f.Cluster); !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("List: error = %v, want context.Canceled", err))
			}
			if err := f.Backend.Create(cctx, f.Cluster, testRoute(f.Cluster, 7, false)); !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("Create: error = %v, want context.Canceled", err))
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			if len(got) != 0 {
				errs = append(errs, fmt.Errorf("a cancelled Create left %d routes", len(got)))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "batch-apply",
		rule: "Apply (when implemented) deletes then creates in one write: a route deleted and created again under its name in one batch is replaced, MaxBatchSize is at least 1, and a batch of MaxBatchSize changes is accepted",
		check: func(ctx context.Context, f RoutesFixture) error {
			ap, ok := f.Backend.(routes.Applier)
			if !ok {
				return nil
			}
			max := ap.MaxBatchSize()
			if max < 1 {
				return fmt.Errorf("MaxBatchSize() = %d, want at least 1", max)
			}
			old := testRoute(f.Cluster, 8, false)
			if err := ap.Apply(ctx, f.Cluster, routes.Batch{Create: []routes.Route{old}}); err != nil {
				return fmt.Errorf("Apply(create): %w", err)
			}
			moved := old
			moved.NodeAddresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.200"}}
			moved.NextHop = netip.MustParseAddr("192.0.2.200")
			batch := routes.Batch{Delete: []routes.Route{old}, Create: []routes.Route{moved}}
			n := min(max, 64)
			if f.Limit > 0 {
				n = min(n, f.Limit-len(f.Foreign)-1)
			}
			for i := 2; i < n; i++ {
				batch.Create = append(batch.Create, testRoute(f.Cluster, 100+i, false))
			}
			if err := ap.Apply(ctx, f.Cluster, batch); err != nil {
				return fmt.Errorf("Apply(replace + %d creates): %w", len(batch.Create)-1, err)
			}
			got, err := listByName(ctx, f)
			if err != nil {
				return err
			}
			var errs []error
			for _, r := range batch.Create {
				g, ok := got[r.Name]
				if !ok {
					errs = append(errs, fmt.Errorf("route %s not listed after Apply", r.Name))
					continue
				}
				errs = append(errs, sameListed(r, g))
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "table-full",
		rule: "when the table has no room (Limit), Create fails with an error wrapping routes.ErrTableFull (routes.TableFull), so the block stops creating and reports the limit",
		check: func(ctx context.Context, f RoutesFixture) error {
			if f.Limit <= 0 {
				return nil
			}
			room := f.Limit - len(f.Foreign)
			for i := range room {
				if err := f.Backend.Create(ctx, f.Cluster, testRoute(f.Cluster, 200+i, false)); err != nil {
					return fmt.Errorf("Create #%d of %d (within the limit): %w", i+1, room, err)
				}
			}
			err := f.Backend.Create(ctx, f.Cluster, testRoute(f.Cluster, 200+room, false))
			if !errors.Is(err, routes.ErrTableFull) {
				return fmt.Errorf("Create past the limit of %d: error = %v, want one wrapping routes.ErrTableFull", f.Limit, err)
			}
			return nil
		},
	},
	{
		name: "sdk-errors-classified",
		rule: "the cloud's 429 (with Retry-After), 5xx and 503 with Retry-After are classified throttled, transient and throttled by List and Create, as cloudcall's mapping says",
		skip: routesNeedFailNext,
		check: func(ctx context.Context, f RoutesFixture) error {
			var errs []error
			for _, tc := range []struct {
				fail SDKFailure
				want cloudcall.Class
			}{
				{SDKFailure{StatusCode: 429, RetryAfter: 7 * time.Second}, cloudcall.ClassThrottled},
				{SDKFailure{StatusCode: 500}, cloudcall.ClassTransient},
				{SDKFailure{StatusCode: 503, RetryAfter: 5 * time.Second}, cloudcall.ClassThrottled},
			} {
				f.FailNext(tc.fail)
				_, err := f.Backend.List(ctx, f.Cluster)
				if got := cloudcall.Classify(err); got != tc.want {
					errs = append(errs, fmt.Errorf("List after a %d: class %v (error %v), want %v", tc.fail.StatusCode, got, err, tc.want))
				}
				f.FailNext(tc.fail)
				err = f.Backend.Create(ctx, f.Cluster, testRoute(f.Cluster, 9, false))
				if got := cloudcall.Classify(err); got != tc.want {
					errs = append(errs, fmt.Errorf("Create after a %d: class %v (error %v), want %v", tc.fail.StatusCode, got, err, tc.want))
				}
				if ra, _ := cloudcall.RetryAfter(err); tc.fail.RetryAfter > 0 && ra != tc.fail.RetryAfter {
					errs = append(errs, fmt.Errorf("Create after a %d with Retry-After %s: RetryAfter = %s", tc.fail.StatusCode, tc.fail.RetryAfter, ra))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "concurrent-creates",
		rule: "Create is safe for concurrent use (upstream's route controller runs up to 200 at once; run with -race): every route is created once",
		check: func(ctx context.Context, f RoutesFixture) error {
			n := 16
			if f.Limit > 0 {
				n = min(n, f.Limit-len(f.Foreign))
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() { errs[i] = f.Backend.Create(ctx, f.Cluster, testRoute(f.Cluster, 300+i, false)) })
			}
			wg.Wait()
			got, err := listByName(ctx, f)
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			if len(got) != n {
				errs = append(errs, fmt.Errorf("List returned %d routes after %d concurrent creates", len(got), n))
			}
			return errors.Join(errs...)
		},
	},
}

func checkRoutesFixture(f RoutesFixture) error {
	switch {
	case f.Backend == nil:
		return errors.New("conformance: fixture has no Backend")
	case f.Cluster == "":
		return errors.New("conformance: fixture has no Cluster")
	case f.Limit > 0 && f.Limit-len(f.Foreign) < 2:
		return errors.New("conformance: fixture's Limit leaves no room for two routes")
	}
	return nil
}

// TestRoutes runs every routes case against fresh fixtures from newFixture
// (each case needs an empty table) and returns every violation joined, each
// prefixed with the case name and rule.
func TestRoutes(ctx context.Context, newFixture func() RoutesFixture) error {
	return routesSuite.test(ctx, newFixture)
}

// RunRoutes runs every routes case as a subtest, each with a fresh fixture
// (an empty table but for its foreign routes) from newFixture; the error
// classification cases are skipped when the fixture has no FailNext, the
// batch case when the backend is no routes.Applier, the full-table case
// without a Limit.
func RunRoutes(t *testing.T, newFixture func(t *testing.T) RoutesFixture) {
	t.Helper()
	routesSuite.run(t, newFixture)
}
