package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
)

// LoadBalancersFixture is a load-balancer backend under test. The suite
// creates load balancers with fresh Service UIDs under Cluster, and deletes
// the ones it created when each case ends.
type LoadBalancersFixture struct {
	// Backend is the backend. The cases for its optional capabilities
	// (lb.TargetUpdater, lb.Lister) run when it implements them.
	Backend lb.Backend
	// Cluster is the cluster name the suite's ownership keys carry.
	Cluster string
	// ForeignKey, when set, is the key of a load balancer the backend holds
	// that another cluster owns (ForeignKey.Cluster != Cluster), named
	// lb.Name(ForeignKey.UID): the ownership cases check that it is never
	// returned for this cluster and that a Create of its name reports it.
	ForeignKey lb.Key
	// Targets, when set, are at least two targets the backend accepts
	// (nodes of the cloud); the default is two made-up ones.
	Targets []lb.Target
	// Settle, when set, is called between two reads that wait for the
	// backend to converge (a load balancer to be visible, Active, changed,
	// gone): it lets time pass, by stepping a fake clock or waiting on a real
	// cloud. An error from it ends the case.
	Settle func(ctx context.Context) error
	// PollLimit is how many reads a wait makes before it reports the
	// backend as stuck (default 30).
	PollLimit int
	// FailNext, when set, makes the backend's SDK (or the in-memory stand-in
	// for it) fail its next call with f, as the cloud's API would. The
	// error-classification cases run only when it is set.
	FailNext func(f SDKFailure)
}

type lbCase struct {
	name, rule string
	// needs marks the cases that run only with a capability or hook.
	needsFailNext, needsLister, needsTargetUpdater, needsForeignKey bool
	check                                                           func(ctx context.Context, r *lbRun) error
}

// lbRun is one case's run: the fixture and the load balancers it created.
type lbRun struct {
	f       LoadBalancersFixture
	mu      sync.Mutex
	created []*lb.LoadBalancer
}

var lbCases = []lbCase{
	{
		name: "create-then-find",
		rule: "Create returns the new load balancer with an ID and the spec; Find by its key then returns it (eventually, when reads lag) with the spec as created: Equal, the ownership key and Service included, and Options exactly as given",
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			created, err := r.create(ctx, spec)
			if err != nil {
				return err
			}
			var errs []error
			if created.ID == "" {
				errs = append(errs, fmt.Errorf("Create(%s) returned a load balancer without an ID", spec.Name))
			}
			errs = append(errs, sameSpec("Create's result", spec, &created.Spec))
			got, err := r.findEventually(ctx, spec.Key, func(*lb.LoadBalancer) bool { return true })
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			if got.ID != created.ID {
				errs = append(errs, fmt.Errorf("Find(%s) returned ID %q, Create returned %q", spec.Key, got.ID, created.ID))
			}
			errs = append(errs, sameSpec("Find's result", spec, &got.Spec))
			return errors.Join(errs...)
		},
	},
	{
		name: "active-has-ingress",
		rule: "an Active load balancer found by its key has ingress a Service status can carry: at least one entry, each with a valid IP or a DNS-1123 hostname (an AWS-style cloud answers with a hostname only), no IP twice, an IPMode (when set) of VIP or Proxy",
		check: func(ctx context.Context, r *lbRun) error {
			got, err := r.createActive(ctx, r.newSpec())
			if err != nil {
				return err
			}
			return checkIngress(got)
		},
	},
	{
		name: "create-idempotent",
		rule: "a second Create of the same name makes nothing and returns an *lb.ExistsError (wrapping lb.ErrExists) holding the load balancer with its stored key, even before reads show the first: the name is the create's idempotency key, so a crash between create and status never makes two",
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			first, err := r.create(ctx, spec)
			if err != nil {
				return err
			}
			var errs []error
			second, err := r.create(ctx, spec)
			errs = append(errs, checkExists(err, second, spec.Name, spec.Key, first.ID))
			errs = append(errs, r.checkListedOnce(ctx, spec))
			return errors.Join(errs...)
		},
	},
	{
		name: "concurrent-create-once",
		rule: "concurrent Creates of one name make one load balancer: one succeeds, the others return *lb.ExistsError (the service controller and a restarted CCM can race)",
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			const n = 8
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				ok      int
				results []error
			)
			for range n {
				wg.Go(func() {
					got, err := r.create(ctx, spec.Clone())
					mu.Lock()
					defer mu.Unlock()
					if err == nil {
						ok++
						return
					}
					results = append(results, checkExists(err, got, spec.Name, spec.Key, ""))
				})
			}
			wg.Wait()
			errs := results
			if ok != 1 {
				errs = append(errs, fmt.Errorf("%d of %d concurrent Creates of %q succeeded, want 1", ok, n, spec.Name))
			}
			errs = append(errs, r.checkListedOnce(ctx, spec))
			return errors.Join(errs...)
		},
	},
	{
		name: "update-round-trip",
		rule: "Update of an Active load balancer returns it with the new spec, and Find then (eventually) returns the new spec: targets, listeners, source ranges and options as given, the ID and name unchanged",
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			cur, err := r.createActive(ctx, spec)
			if err != nil {
				return err
			}
			next := spec.Clone()
			next.Targets = next.Targets[1:]
			next.Listeners = append(next.Listeners, lb.Listener{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, NodePort: 30443})
			next.SourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("192.0.2.0/25")}
			next.Options = map[string]string{conformanceOption: "premium", conformanceOption + "-added": "yes"}
			updated, err := r.f.Backend.Update(ctx, cur, next)
			if err != nil {
				return fmt.Errorf("Update(%s): %w", cur.ID, err)
			}
			var errs []error
			if updated == nil {
				errs = append(errs, fmt.Errorf("Update(%s) returned no load balancer and no error", cur.ID))
			} else {
				errs = append(errs, sameSpec("Update's result", next, &updated.Spec), sameIdentity("Update's result", cur, updated))
			}
			got, err := r.findEventually(ctx, spec.Key, func(l *lb.LoadBalancer) bool { return l.Spec.Equal(next) })
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, sameSpec("Find after Update", next, &got.Spec), sameIdentity("Find after Update", cur, got))
			return errors.Join(errs...)
		},
	},
	{
		name:               "update-targets",
		rule:               "UpdateTargets (when implemented) replaces the targets and nothing else: Find then (eventually) returns the old spec with the new targets",
		needsTargetUpdater: true,
		check: func(ctx context.Context, r *lbRun) error {
			tu := r.f.Backend.(lb.TargetUpdater)
			spec := r.newSpec()
			cur, err := r.createActive(ctx, spec)
			if err != nil {
				return err
			}
			want := spec.Clone()
			want.Targets = want.Targets[:1]
			updated, err := tu.UpdateTargets(ctx, cur, want.Clone().Targets)
			if err != nil {
				return fmt.Errorf("UpdateTargets(%s): %w", cur.ID, err)
			}
			var errs []error
			if updated == nil {
				errs = append(errs, fmt.Errorf("UpdateTargets(%s) returned no load balancer and no error", cur.ID))
			} else {
				errs = append(errs, sameSpec("UpdateTargets' result", want, &updated.Spec))
			}
			got, err := r.findEventually(ctx, spec.Key, func(l *lb.LoadBalancer) bool { return l.Spec.TargetsEqual(want) })
			if err != nil {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, sameSpec("Find after UpdateTargets", want, &got.Spec), sameIdentity("Find after UpdateTargets", cur, got))
			return errors.Join(errs...)
		},
	},
	{
		name: "find-missing",
		rule: "Find of a key no load balancer has returns an error wrapping cloudcall.ErrNotFound and no load balancer: never (nil, nil), never an unclassified error",
		check: func(ctx context.Context, r *lbRun) error {
			key := r.newSpec().Key
			got, err := r.f.Backend.Find(ctx, key)
			return checkNotFound(fmt.Sprintf("Find(%s) of a missing key", key), got, err)
		},
	},
	{
		name: "delete-idempotent",
		rule: "Delete returns nil once the deletion is accepted, and nil or cloudcall.ErrNotFound when repeated; Find then (eventually) returns cloudcall.ErrNotFound",
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			cur, err := r.createActive(ctx, spec)
			if err != nil {
				return err
			}
			if err := r.f.Backend.Delete(ctx, cur); err != nil {
				return fmt.Errorf("Delete(%s): %w", cur.ID, err)
			}
			var errs []error
			if err := r.f.Backend.Delete(ctx, cur); err != nil && !errors.Is(err, cloudcall.ErrNotFound) {
				errs = append(errs, fmt.Errorf("second Delete(%s) = %v, want nil or an error wrapping cloudcall.ErrNotFound", cur.ID, err))
			}
			err = r.eventually(ctx, fmt.Sprintf("Find(%s) to return cloudcall.ErrNotFound after Delete", spec.Key), func() (bool, error) {
				got, err := r.f.Backend.Find(ctx, spec.Key)
				switch {
				case errors.Is(err, cloudcall.ErrNotFound):
					return true, checkNotFound("Find after Delete", got, err)
				case err != nil:
					return false, fmt.Errorf("Find(%s) after Delete: %w", spec.Key, err)
				case got == nil:
					return false, fmt.Errorf("Find(%s) after Delete returned (nil, nil)", spec.Key)
				}
				return false, nil
			})
			errs = append(errs, err)
			if err == nil {
				if err := r.f.Backend.Delete(ctx, cur); err != nil && !errors.Is(err, cloudcall.ErrNotFound) {
					errs = append(errs, fmt.Errorf("Delete(%s) of a load balancer gone = %v, want nil or an error wrapping cloudcall.ErrNotFound", cur.ID, err))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "ownership",
		rule: "Find matches the whole ownership key: another cluster's key for the same Service UID does not find this cluster's load balancer, and this cluster's key never finds another cluster's (ForeignKey's)",
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			created, err := r.create(ctx, spec)
			if err != nil {
				return err
			}
			if _, err := r.findEventually(ctx, spec.Key, func(*lb.LoadBalancer) bool { return true }); err != nil {
				return err
			}
			var errs []error
			other := lb.Key{Cluster: r.otherCluster(), UID: spec.Key.UID}
			got, err := r.f.Backend.Find(ctx, other)
			if err == nil && got != nil && got.ID == created.ID {
				errs = append(errs, fmt.Errorf("Find(%s) returned this cluster's load balancer %s (key %s)", other, got.ID, got.Spec.Key))
			} else {
				errs = append(errs, checkNotFound(fmt.Sprintf("Find(%s) of another cluster's key", other), got, err))
			}
			if fk := r.f.ForeignKey; !fk.IsZero() {
				ours := lb.Key{Cluster: r.f.Cluster, UID: fk.UID}
				got, err := r.f.Backend.Find(ctx, ours)
				errs = append(errs, checkNotFound(fmt.Sprintf("Find(%s), the foreign load balancer's UID under this cluster", ours), got, err))
				got, err = r.f.Backend.Find(ctx, fk)
				switch {
				case err != nil:
					errs = append(errs, fmt.Errorf("Find(%s) of the fixture's foreign load balancer: %w", fk, err))
				case got == nil:
					errs = append(errs, fmt.Errorf("Find(%s) of the fixture's foreign load balancer returned (nil, nil)", fk))
				case got.Spec.Key != fk:
					errs = append(errs, fmt.Errorf("Find(%s) returned a load balancer with key %s", fk, got.Spec.Key))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name:            "foreign-name-exists",
		rule:            "a Create whose name another cluster's load balancer holds makes nothing and returns *lb.ExistsError carrying that cluster's key, so the Reconciler refuses to adopt it",
		needsForeignKey: true,
		check: func(ctx context.Context, r *lbRun) error {
			fk := r.f.ForeignKey
			spec := r.newSpec()
			spec.Name = lb.Name(fk.UID)
			spec.Key.UID, spec.Service.UID = fk.UID, fk.UID
			got, err := r.create(ctx, spec)
			return checkExists(err, got, spec.Name, fk, "")
		},
	},
	{
		name:        "list-owned-only",
		rule:        "List(cluster) (when implemented) returns every load balancer this cluster owns, its own writes included, once each, with no nil entries and none another cluster owns; List of another cluster returns none of them",
		needsLister: true,
		check: func(ctx context.Context, r *lbRun) error {
			l := r.f.Backend.(lb.Lister)
			a, b := r.newSpec(), r.newSpec()
			for _, s := range []*lb.Spec{a, b} {
				if _, err := r.create(ctx, s); err != nil {
					return err
				}
			}
			list, err := l.List(ctx, r.f.Cluster)
			if err != nil {
				return fmt.Errorf("List(%q): %w", r.f.Cluster, err)
			}
			var errs []error
			seen := map[lb.Key]int{}
			for i, got := range list {
				switch {
				case got == nil:
					errs = append(errs, fmt.Errorf("List(%q)[%d] is nil", r.f.Cluster, i))
					continue
				case got.Spec.Key.Cluster != r.f.Cluster || got.Spec.Key.IsZero():
					errs = append(errs, fmt.Errorf("List(%q) returned %s (%s) owned by %q", r.f.Cluster, got.Spec.Name, got.ID, got.Spec.Key))
				}
				seen[got.Spec.Key]++
			}
			for _, s := range []*lb.Spec{a, b} {
				if n := seen[s.Key]; n != 1 {
					errs = append(errs, fmt.Errorf("List(%q) returned %s %d times right after Create, want once (a Lister reads its own writes)", r.f.Cluster, s.Name, n))
				}
			}
			if fk := r.f.ForeignKey; !fk.IsZero() && seen[fk] > 0 {
				errs = append(errs, fmt.Errorf("List(%q) returned the foreign load balancer %s", r.f.Cluster, fk))
			}
			other, err := l.List(ctx, r.otherCluster())
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("List(%q): %w", r.otherCluster(), err))...)
			}
			for _, got := range other {
				if got != nil && got.Spec.Key.Cluster == r.f.Cluster {
					errs = append(errs, fmt.Errorf("List(%q) returned %s owned by %s", r.otherCluster(), got.Spec.Name, got.Spec.Key))
				}
			}
			return errors.Join(errs...)
		},
	},
	{
		name: "pending-becomes-active",
		rule: "a created load balancer becomes Active within the poll limit: Find reports Pending (with the backend's progress) or, while reads lag, not found, and never Failed or Deleting",
		check: func(ctx context.Context, r *lbRun) error {
			_, err := r.createActive(ctx, r.newSpec())
			return err
		},
	},
	{
		name: "cancelled-context",
		rule: "a call with a cancelled context returns an error wrapping context.Canceled and no result: controllers cancel on shutdown",
		check: func(ctx context.Context, r *lbRun) error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			var errs []error
			key := r.newSpec().Key
			if got, err := r.f.Backend.Find(ctx, key); !errors.Is(err, context.Canceled) || got != nil {
				errs = append(errs, fmt.Errorf("Find(%s) with a cancelled context = (%v, %v), want (false, context.Canceled)", key, got != nil, err))
			}
			spec := r.newSpec()
			if got, err := r.create(ctx, spec); !errors.Is(err, context.Canceled) || got != nil {
				errs = append(errs, fmt.Errorf("Create(%s) with a cancelled context = (%v, %v), want (false, context.Canceled)", spec.Name, got != nil, err))
			}
			return errors.Join(errs...)
		},
	},
	{
		name:          "sdk-404-is-not-found",
		rule:          "a 404 from the cloud for the load balancer asked about is an error wrapping cloudcall.ErrNotFound from Find, and no load balancer",
		needsFailNext: true,
		check: func(ctx context.Context, r *lbRun) error {
			spec := r.newSpec()
			if _, err := r.create(ctx, spec); err != nil {
				return err
			}
			if _, err := r.findEventually(ctx, spec.Key, func(*lb.LoadBalancer) bool { return true }); err != nil {
				return err
			}
			r.f.FailNext(SDKFailure{StatusCode: 404})
			got, err := r.f.Backend.Find(ctx, spec.Key)
			return checkNotFound("Find after a 404", got, err)
		},
	},
	{
		name:          "sdk-429-is-throttled",
		rule:          "a 429 with Retry-After is a *cloudcall.ThrottledError with that Retry-After, from Find, Create and List, so the budget waits as the cloud asked",
		needsFailNext: true,
		check: func(ctx context.Context, r *lbRun) error {
			return r.classifiesAs(ctx, SDKFailure{StatusCode: 429, RetryAfter: 7 * time.Second}, cloudcall.ClassThrottled)
		},
	},
	{
		name:          "sdk-5xx-is-transient",
		rule:          "a 5xx without Retry-After is classified transient (cloudcall.Transient), from Find, Create and List, so the budget retries it",
		needsFailNext: true,
		check: func(ctx context.Context, r *lbRun) error {
			return errors.Join(
				r.classifiesAs(ctx, SDKFailure{StatusCode: 500}, cloudcall.ClassTransient),
				r.classifiesAs(ctx, SDKFailure{StatusCode: 503}, cloudcall.ClassTransient))
		},
	},
	{
		name:          "sdk-503-with-retry-after-is-throttled",
		rule:          "a 503 with Retry-After is a *cloudcall.ThrottledError with that Retry-After: the cloud said when to come back",
		needsFailNext: true,
		check: func(ctx context.Context, r *lbRun) error {
			return r.classifiesAs(ctx, SDKFailure{StatusCode: 503, RetryAfter: 5 * time.Second}, cloudcall.ClassThrottled)
		},
	},
	{
		name:          "sdk-400-is-permanent",
		rule:          "a 400 (a bad request: invalid spec, quota) is classified permanent (cloudcall.Permanent), from Find, Create and List, so it is not retried",
		needsFailNext: true,
		check: func(ctx context.Context, r *lbRun) error {
			return r.classifiesAs(ctx, SDKFailure{StatusCode: 400}, cloudcall.ClassPermanent)
		},
	},
}

// checkIngress checks that l's ingress can be a Service's status.
func checkIngress(l *lb.LoadBalancer) error {
	if len(l.Ingress) == 0 {
		return fmt.Errorf("the Active load balancer %s has no ingress: the Service would stay pending", l.ID)
	}
	var errs []error
	seen := map[netip.Addr]bool{}
	for i, in := range l.Ingress {
		switch {
		case in.IP.IsValid() && seen[in.IP]:
			errs = append(errs, fmt.Errorf("ingress %d: IP %s listed twice", i, in.IP))
		case in.IP.IsValid():
			seen[in.IP] = true
		case in.Hostname == "":
			errs = append(errs, fmt.Errorf("ingress %d has neither an IP nor a hostname", i))
		}
		if in.Hostname != "" {
			if bad := validation.IsDNS1123Subdomain(in.Hostname); len(bad) > 0 {
				errs = append(errs, fmt.Errorf("ingress %d: hostname %q: %s", i, in.Hostname, strings.Join(bad, "; ")))
			}
		}
		if m := in.IPMode; m != "" && m != v1.LoadBalancerIPModeVIP && m != v1.LoadBalancerIPModeProxy {
			errs = append(errs, fmt.Errorf("ingress %d: IPMode %q, want VIP or Proxy", i, m))
		}
	}
	return errors.Join(errs...)
}

// conformanceOption is the provider option the suite's specs carry.
const conformanceOption = "conformance.ccmkit.io/tier"

// newSpec returns a spec for a fresh Service UID under the fixture's
// cluster: one TCP listener, the fixture's targets (two), kube-proxy's
// health check, IPv4, one option.
func (r *lbRun) newSpec() *lb.Spec {
	uid := uuid.NewUUID()
	targets := r.f.Targets
	if len(targets) == 0 {
		targets = []lb.Target{
			{ProviderID: "conformance:///zone-a/node-1", NodeName: "node-1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
			{ProviderID: "conformance:///zone-a/node-2", NodeName: "node-2", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		}
	}
	return (&lb.Spec{
		Name:            lb.Name(uid),
		Key:             lb.Key{Cluster: r.f.Cluster, UID: uid},
		Service:         lb.ServiceRef{Namespace: "conformance", Name: "lb-" + string(uid)[:8], UID: uid},
		Listeners:       []lb.Listener{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080}},
		Targets:         targets,
		HealthCheck:     lb.HealthCheck{Port: lb.KubeProxyHealthPort, Path: "/healthz"},
		IPFamilies:      []v1.IPFamily{v1.IPv4Protocol},
		SessionAffinity: v1.ServiceAffinityNone,
		Options:         map[string]string{conformanceOption: "standard"},
	}).Clone()
}

func (r *lbRun) otherCluster() string { return r.f.Cluster + "-conformance-other" }

// create calls Create and remembers what it made, for cleanup. A (nil, nil)
// answer is a violation.
func (r *lbRun) create(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	got, err := r.f.Backend.Create(ctx, spec)
	switch {
	case err == nil && got == nil:
		return nil, fmt.Errorf("Create(%s) returned (nil, nil)", spec.Name)
	case got != nil:
		r.mu.Lock()
		r.created = append(r.created, got)
		r.mu.Unlock()
	}
	if err != nil {
		err = fmt.Errorf("Create(%s): %w", spec.Name, err)
	}
	return got, err
}

// createActive creates spec and waits until Find reports it Active.
func (r *lbRun) createActive(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	if _, err := r.create(ctx, spec); err != nil {
		return nil, err
	}
	return r.findEventually(ctx, spec.Key, func(l *lb.LoadBalancer) bool { return l.Status == lb.StatusActive })
}

// findEventually polls Find(key) until it returns a load balancer for which
// done holds. Not found (reads lag) and Pending are waited out; Failed and
// Deleting are violations.
func (r *lbRun) findEventually(ctx context.Context, key lb.Key, done func(*lb.LoadBalancer) bool) (*lb.LoadBalancer, error) {
	var (
		out  *lb.LoadBalancer
		last string
	)
	err := r.eventually(ctx, fmt.Sprintf("Find(%s)", key), func() (bool, error) {
		got, err := r.f.Backend.Find(ctx, key)
		switch {
		case errors.Is(err, cloudcall.ErrNotFound):
			last = "not found"
			return false, nil
		case err != nil:
			return false, fmt.Errorf("Find(%s): %w", key, err)
		case got == nil:
			return false, fmt.Errorf("Find(%s) returned (nil, nil)", key)
		case got.Status == lb.StatusFailed || got.Status == lb.StatusDeleting:
			return false, fmt.Errorf("Find(%s): load balancer %s is %v (%s)", key, got.ID, got.Status, got.Message)
		case got.Spec.Key != key:
			return false, fmt.Errorf("Find(%s) returned load balancer %s with key %s", key, got.ID, got.Spec.Key)
		}
		last = fmt.Sprintf("%v %q", got.Status, got.Message)
		if done(got) {
			out = got
			return true, nil
		}
		return false, nil
	})
	if err != nil && last != "" {
		err = fmt.Errorf("%w (last seen: %s)", err, last)
	}
	return out, err
}

// eventually calls try until it reports done or fails, settling in between,
// at most PollLimit times.
func (r *lbRun) eventually(ctx context.Context, what string, try func() (bool, error)) error {
	limit := r.f.PollLimit
	if limit <= 0 {
		limit = 30
	}
	for i := range limit {
		if i > 0 && r.f.Settle != nil {
			if err := r.f.Settle(ctx); err != nil {
				return fmt.Errorf("waiting for %s: settle: %w", what, err)
			}
		}
		done, err := try()
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("waiting for %s: not done after %d polls", what, limit)
}

// checkListedOnce checks, when the backend is a Lister, that List returns
// exactly one load balancer named spec.Name.
func (r *lbRun) checkListedOnce(ctx context.Context, spec *lb.Spec) error {
	l, ok := r.f.Backend.(lb.Lister)
	if !ok {
		return nil
	}
	list, err := l.List(ctx, r.f.Cluster)
	if err != nil {
		return fmt.Errorf("List(%q): %w", r.f.Cluster, err)
	}
	n := 0
	for _, got := range list {
		if got != nil && (got.Spec.Name == spec.Name || got.Spec.Key == spec.Key) {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("List(%q) holds %d load balancers named %s or keyed %s, want 1", r.f.Cluster, n, spec.Name, spec.Key)
	}
	return nil
}

// cleanup deletes what the run created.
func (r *lbRun) cleanup(ctx context.Context) error {
	r.mu.Lock()
	created := r.created
	r.mu.Unlock()
	var errs []error
	for _, l := range created {
		if err := r.f.Backend.Delete(ctx, l); err != nil && !errors.Is(err, cloudcall.ErrNotFound) {
			errs = append(errs, fmt.Errorf("cleanup: Delete(%s %s): %w", l.Spec.Name, l.ID, err))
		}
	}
	return errors.Join(errs...)
}

// classifiesAs checks that Find, Create (and List, when implemented) fail
// with an error of class want after fail, with no result and the failure's
// Retry-After when it has one.
func (r *lbRun) classifiesAs(ctx context.Context, fail SDKFailure, want cloudcall.Class) error {
	type call struct {
		name string
		call func() (bool, error)
	}
	calls := []call{
		{"Find", func() (bool, error) {
			got, err := r.f.Backend.Find(ctx, r.newSpec().Key)
			return got != nil, err
		}},
		{"Create", func() (bool, error) {
			got, err := r.create(ctx, r.newSpec())
			return got != nil, err
		}},
	}
	if l, ok := r.f.Backend.(lb.Lister); ok {
		calls = append(calls, call{"List", func() (bool, error) {
			list, err := l.List(ctx, r.f.Cluster)
			return list != nil, err
		}})
	}
	var errs []error
	for _, c := range calls {
		r.f.FailNext(fail)
		result, err := c.call()
		if got := cloudcall.Classify(err); got != want {
			errs = append(errs, fmt.Errorf("%s after a %d: class %v (error %v), want %v", c.name, fail.StatusCode, got, err, want))
			continue
		}
		if result {
			errs = append(errs, fmt.Errorf("%s after a %d returned a result with its error", c.name, fail.StatusCode))
		}
		if fail.RetryAfter > 0 {
			var te *cloudcall.ThrottledError
			if !errors.As(err, &te) || te.RetryAfter != fail.RetryAfter {
				ra, _ := cloudcall.RetryAfter(err)
				errs = append(errs, fmt.Errorf("%s after a %d with Retry-After %s: want a *cloudcall.ThrottledError with it, got Retry-After %s", c.name, fail.StatusCode, fail.RetryAfter, ra))
			}
		}
	}
	return errors.Join(errs...)
}

func checkNotFound(what string, got *lb.LoadBalancer, err error) error {
	var errs []error
	if !errors.Is(err, cloudcall.ErrNotFound) {
		if err == nil && got == nil {
			errs = append(errs, fmt.Errorf("%s returned (nil, nil), want an error wrapping cloudcall.ErrNotFound", what))
		} else {
			errs = append(errs, fmt.Errorf("%s: error = %v, want one wrapping cloudcall.ErrNotFound", what, err))
		}
	}
	if got != nil {
		errs = append(errs, fmt.Errorf("%s returned load balancer %s (key %s)", what, got.ID, got.Spec.Key))
	}
	return errors.Join(errs...)
}

// checkExists checks that a Create of name failed with an *lb.ExistsError
// holding the load balancer with key (and ID id, when set).
func checkExists(err error, got *lb.LoadBalancer, name string, key lb.Key, id string) error {
	var exists *lb.ExistsError
	switch {
	case err == nil:
		return fmt.Errorf("Create(%s) of an existing name succeeded (load balancer %s): it must make nothing and return *lb.ExistsError", name, idOfLB(got))
	case !errors.As(err, &exists):
		return fmt.Errorf("Create(%s) of an existing name: error = %v, want an *lb.ExistsError", name, err)
	}
	var errs []error
	if !errors.Is(err, lb.ErrExists) {
		errs = append(errs, fmt.Errorf("Create(%s) of an existing name: the error does not wrap lb.ErrExists", name))
	}
	if got != nil {
		errs = append(errs, fmt.Errorf("Create(%s) of an existing name returned a load balancer with its error", name))
	}
	switch l := exists.LoadBalancer; {
	case l == nil:
		errs = append(errs, fmt.Errorf("Create(%s) of an existing name: the *lb.ExistsError holds no load balancer", name))
	case l.Spec.Key != key:
		errs = append(errs, fmt.Errorf("Create(%s) of an existing name: the *lb.ExistsError holds key %q, want the stored %q", name, l.Spec.Key, key))
	case id != "" && l.ID != id:
		errs = append(errs, fmt.Errorf("Create(%s) of an existing name: the *lb.ExistsError holds ID %s, want %s", name, l.ID, id))
	}
	return errors.Join(errs...)
}

var compareSpecs = cmp.Options{
	cmpopts.EquateEmpty(),
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
	cmpopts.IgnoreFields(lb.Spec{}, "Name"),
}

// sameSpec checks that got is Equal to want, and that Options are exactly
// want's.
func sameSpec(what string, want, got *lb.Spec) error {
	if got.Equal(want) {
		return nil
	}
	a, b := want.Clone(), got.Clone()
	a.Normalize()
	b.Normalize()
	d := cmp.Diff(*a, *b, compareSpecs)
	if d == "" {
		d = "(lb.Spec.Equal differs where the diff shows none)"
	}
	return fmt.Errorf("%s: spec mismatch (-want +got, normalized):\n%s", what, d)
}

func sameIdentity(what string, want, got *lb.LoadBalancer) error {
	if got.ID != want.ID || got.Spec.Name != want.Spec.Name {
		return fmt.Errorf("%s is %s %s, want %s %s: an update keeps the ID and the name", what, got.Spec.Name, got.ID, want.Spec.Name, want.ID)
	}
	return nil
}

func idOfLB(l *lb.LoadBalancer) string {
	if l == nil {
		return "<nil>"
	}
	return l.ID
}

func checkLBFixture(f LoadBalancersFixture) error {
	switch {
	case f.Backend == nil:
		return errors.New("conformance: fixture has no Backend")
	case f.Cluster == "":
		return errors.New("conformance: fixture has no Cluster")
	case f.Targets != nil && len(f.Targets) < 2:
		return errors.New("conformance: fixture Targets need at least two targets")
	case !f.ForeignKey.IsZero() && f.ForeignKey.Cluster == f.Cluster:
		return errors.New("conformance: fixture ForeignKey must name another cluster")
	case !f.ForeignKey.IsZero() && f.ForeignKey.UID == "":
		return errors.New("conformance: fixture ForeignKey has no UID")
	}
	return nil
}

// skip returns why c does not run against f, or "".
func (c *lbCase) skip(f LoadBalancersFixture) string {
	_, lister := f.Backend.(lb.Lister)
	_, updater := f.Backend.(lb.TargetUpdater)
	switch {
	case c.needsFailNext && f.FailNext == nil:
		return noFailNext
	case c.needsLister && !lister:
		return "the backend is not an lb.Lister"
	case c.needsTargetUpdater && !updater:
		return "the backend is not an lb.TargetUpdater"
	case c.needsForeignKey && f.ForeignKey.IsZero():
		return "the fixture has no ForeignKey"
	}
	return ""
}

// run runs c against f and cleans up what it created.
func (c *lbCase) run(ctx context.Context, f LoadBalancersFixture) error {
	r := &lbRun{f: f}
	err := c.check(ctx, r)
	return errors.Join(err, r.cleanup(context.WithoutCancel(ctx)))
}

// lbSuite drives lbCases, each on its own lbRun.
var lbSuite = suite[LoadBalancersFixture]{validate: checkLBFixture, cases: lbSuiteCases()}

func lbSuiteCases() []conformanceCase[LoadBalancersFixture] {
	out := make([]conformanceCase[LoadBalancersFixture], len(lbCases))
	for i := range lbCases {
		c := &lbCases[i]
		out[i] = conformanceCase[LoadBalancersFixture]{name: c.name, rule: c.rule, skip: c.skip, check: c.run}
	}
	return out
}

// TestLoadBalancers runs every load-balancer case against f (the cases of
// optional capabilities when the backend has them, the error
// classification cases when f.FailNext is set, the foreign-name case when
// f.ForeignKey is set) and returns every violation joined, each prefixed
// with the case name and rule. It deletes the load balancers it created.
func TestLoadBalancers(ctx context.Context, f LoadBalancersFixture) error {
	return lbSuite.test(ctx, func() LoadBalancersFixture { return f })
}

// RunLoadBalancers runs every load-balancer case as a subtest, each with a
// fresh fixture from newFixture; the cases a fixture cannot run (see
// TestLoadBalancers) are skipped with the reason.
func RunLoadBalancers(t *testing.T, newFixture func(t *testing.T) LoadBalancersFixture) {
	t.Helper()
	lbSuite.run(t, newFixture)
}
