package harness_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/ccmkit/ccmkit/testing/harness"
)

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newFake(t *testing.T, opts harness.FakeOptions) *fake.Clientset {
	t.Helper()
	if opts.Clock == nil {
		opts.Clock = clocktesting.NewFakePassiveClock(epoch)
	}
	return harness.NewFakeClientset(opts)
}

func lbService(name string) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeLoadBalancer,
			Ports: []v1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

func createService(t *testing.T, c *fake.Clientset, svc *v1.Service) *v1.Service {
	t.Helper()
	got, err := c.CoreV1().Services(svc.Namespace).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service %s: %v", svc.Name, err)
	}
	return got
}

func getService(t *testing.T, c *fake.Clientset, name string) *v1.Service {
	t.Helper()
	got, err := c.CoreV1().Services("default").Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting service %s: %v", name, err)
	}
	return got
}

func rv(t *testing.T, m metav1.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q of %s: %v", m.GetResourceVersion(), m.GetName(), err)
	}
	return n
}

func TestFakeClientsetCreateSetsMetadata(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	node, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := createService(t, c, lbService("s1"))
	event, err := c.CoreV1().Events("default").Create(ctx, &v1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "default"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := c.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l1", Namespace: "kube-system"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		Created    time.Time
		Generation int64
	}
	uids := map[types.UID]string{}
	for _, o := range []struct {
		m          metav1.Object
		generation int64
	}{{node, 0}, {svc, 1}, {event, 0}, {lease, 0}} {
		m := o.m
		if m.GetUID() == "" {
			t.Errorf("%s has no uid", m.GetName())
		}
		if other, dup := uids[m.GetUID()]; dup {
			t.Errorf("%s has the uid of %s", m.GetName(), other)
		}
		uids[m.GetUID()] = m.GetName()
		rv(t, m) // a decimal number
		want := got{Created: epoch, Generation: o.generation}
		if diff := cmp.Diff(want, got{Created: m.GetCreationTimestamp().UTC(), Generation: m.GetGeneration()}); diff != "" {
			t.Errorf("%s (-want +got):\n%s", m.GetName(), diff)
		}
	}
}

func TestFakeClientsetResourceVersionIncreases(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	var last int64
	for i := range 3 {
		n, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("n", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Labels = map[string]string{"a": "b"}
		u, err := c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if created, updated := rv(t, n), rv(t, u); created <= last || updated <= created {
			t.Errorf("resourceVersions %d (create), %d (update) after %d: want increasing", created, updated, last)
		}
		last = rv(t, u)
	}
	// The list's resourceVersion is the latest, and a watch from an
	// object's resourceVersion sees only the later writes.
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := list.ResourceVersion; got != strconv.FormatInt(last, 10) {
		t.Errorf("list resourceVersion %s, want %d", got, last)
	}
	w, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{ResourceVersion: list.Items[1].ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev := <-w.ResultChan()
	if got := ev.Object.(*v1.Node).Name; got != "n2" {
		t.Errorf("watch from n1's resourceVersion: first event for %s, want n2", got)
	}
}

func TestFakeClientsetCreateFromGenerateName(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	seen := map[string]bool{}
	for range 3 {
		e, err := c.CoreV1().Events("default").Create(t.Context(), &v1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "ev-", Namespace: "default"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Name) != len("ev-")+5 || e.Name[:3] != "ev-" || seen[e.Name] {
			t.Errorf("generated name %q: want ev- and 5 characters, unique", e.Name)
		}
		seen[e.Name] = true
	}
}

func TestFakeClientsetCreateWithResourceVersionIsRefused(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	_, err := c.CoreV1().Nodes().Create(t.Context(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7"}}, metav1.CreateOptions{})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("create with resourceVersion: %v, want BadRequest", err)
	}
}

func TestFakeClientsetWritesBumpResourceVersionAndGeneration(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	svc := createService(t, c, lbService("s"))
	type state struct {
		RV         int64
		Generation int64
	}
	prev := state{rv(t, svc), svc.Generation}

	// A metadata-only update bumps the resourceVersion, not the generation.
	svc.Labels = map[string]string{"a": "b"}
	svc, err := c.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(state{prev.RV + 1, 1}, state{rv(t, svc), svc.Generation}); diff != "" {
		t.Errorf("after label update (-want +got):\n%s", diff)
	}
	// A spec patch bumps both.
	svc, err = c.CoreV1().Services("default").Patch(ctx, "s", types.MergePatchType, []byte(`{"spec":{"loadBalancerSourceRanges":["10.0.0.0/8"]}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(state{prev.RV + 2, 2}, state{rv(t, svc), svc.Generation}); diff != "" {
		t.Errorf("after spec patch (-want +got):\n%s", diff)
	}
	// A status write bumps the resourceVersion only.
	svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{Hostname: "lb.example"}}
	svc, err = c.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(state{prev.RV + 3, 2}, state{rv(t, svc), svc.Generation}); diff != "" {
		t.Errorf("after status update (-want +got):\n%s", diff)
	}
}

func TestFakeClientsetStaleUpdateConflicts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rv       func(current string) string
		conflict bool
	}{
		{"current resourceVersion", func(cur string) string { return cur }, false},
		{"no resourceVersion (unconditional)", func(string) string { return "" }, false},
		{"stale resourceVersion", func(string) string { return "1" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFake(t, harness.FakeOptions{})
			ctx := t.Context()
			n, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Labels = map[string]string{"x": "y"}
			if _, err := c.CoreV1().Nodes().Update(ctx, n.DeepCopy(), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err) // moves the stored resourceVersion past n's
			}
			cur, _ := c.CoreV1().Nodes().Get(ctx, "n", metav1.GetOptions{})
			n.Labels = map[string]string{"x": "z"}
			n.ResourceVersion = tc.rv(cur.ResourceVersion)
			_, err = c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			if got := apierrors.IsConflict(err); got != tc.conflict {
				t.Fatalf("update: %v, want conflict %v", err, tc.conflict)
			}
		})
	}
}

func TestFakeClientsetStalePatchConflicts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		patchType types.PatchType
		patch     func(rv string) string
		conflict  bool
	}{
		{"strategic merge, no resourceVersion", types.StrategicMergePatchType, func(string) string { return `{"metadata":{"labels":{"a":"b"}}}` }, false},
		{"strategic merge, current", types.StrategicMergePatchType, func(rv string) string { return `{"metadata":{"resourceVersion":"` + rv + `","labels":{"a":"b"}}}` }, false},
		{"strategic merge, stale", types.StrategicMergePatchType, func(string) string { return `{"metadata":{"resourceVersion":"1","labels":{"a":"b"}}}` }, true},
		{"merge, stale", types.MergePatchType, func(string) string { return `{"metadata":{"resourceVersion":"1","labels":{"a":"b"}}}` }, true},
		{"json, stale", types.JSONPatchType, func(string) string { return `[{"op":"replace","path":"/metadata/resourceVersion","value":"1"}]` }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFake(t, harness.FakeOptions{})
			ctx := t.Context()
			n, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Labels = map[string]string{"x": "y"}
			n, err = c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.CoreV1().Nodes().Patch(ctx, "n", tc.patchType, []byte(tc.patch(n.ResourceVersion)), metav1.PatchOptions{})
			if got := apierrors.IsConflict(err); got != tc.conflict {
				t.Fatalf("patch: %v, want conflict %v", err, tc.conflict)
			}
		})
	}
}

func TestFakeClientsetWritesKeepSystemFields(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	n, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edit := n.DeepCopy()
	edit.CreationTimestamp = metav1.NewTime(epoch.Add(time.Hour))
	edit.UID = ""
	got, err := c.CoreV1().Nodes().Update(ctx, edit, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type meta struct {
		UID     types.UID
		Created time.Time
	}
	if diff := cmp.Diff(meta{n.UID, epoch}, meta{got.UID, got.CreationTimestamp.UTC()}); diff != "" {
		t.Errorf("system fields after update (-want +got):\n%s", diff)
	}
	edit = got.DeepCopy()
	edit.UID = "someone-else"
	if _, err := c.CoreV1().Nodes().Update(ctx, edit, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("update with another uid: %v, want Conflict", err)
	}
}

func TestFakeClientsetDeleteWithoutFinalizersIsImmediate(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	if _, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().Nodes().Delete(ctx, "n", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Nodes().Get(ctx, "n", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete: %v, want NotFound", err)
	}
}

func TestFakeClientsetGracefulDeletion(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(epoch)
	c := newFake(t, harness.FakeOptions{Clock: clk})
	ctx := t.Context()
	svc := lbService("s")
	svc.Finalizers = []string{"example.com/a", "example.com/b"}
	created := createService(t, c, svc)
	clk.SetTime(epoch.Add(time.Minute))
	if err := c.CoreV1().Services("default").Delete(ctx, "s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleting := getService(t, c, "s")
	type state struct {
		Deleted    time.Time
		Grace      *int64
		Finalizers []string
	}
	want := state{epoch.Add(time.Minute), ptr.To[int64](0), []string{"example.com/a", "example.com/b"}}
	if diff := cmp.Diff(want, state{deleting.DeletionTimestamp.UTC(), deleting.DeletionGracePeriodSeconds, deleting.Finalizers}); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
	if rv(t, deleting) <= rv(t, created) {
		t.Errorf("delete did not bump resourceVersion")
	}
	// Deleting again changes nothing.
	clk.SetTime(epoch.Add(time.Hour))
	if err := c.CoreV1().Services("default").Delete(ctx, "s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if again := getService(t, c, "s"); again.ResourceVersion != deleting.ResourceVersion || !again.DeletionTimestamp.Equal(deleting.DeletionTimestamp) {
		t.Errorf("second delete changed the object: %v at %s, was %v at %s", again.DeletionTimestamp, again.ResourceVersion, deleting.DeletionTimestamp, deleting.ResourceVersion)
	}
	// Removing one finalizer keeps it; an update cannot clear the deletion timestamp.
	deleting.Finalizers = []string{"example.com/b"}
	deleting.DeletionTimestamp = nil
	kept, err := c.CoreV1().Services("default").Update(ctx, deleting, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if kept.DeletionTimestamp == nil {
		t.Errorf("update cleared the deletion timestamp")
	}
	// Removing the last one deletes it.
	kept.Finalizers = nil
	last, err := c.CoreV1().Services("default").Update(ctx, kept, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update removing the last finalizer: %v", err)
	}
	if last.Name != "s" || len(last.Finalizers) != 0 {
		t.Errorf("update returned %s with finalizers %v, want the final object", last.Name, last.Finalizers)
	}
	if _, err := c.CoreV1().Services("default").Get(ctx, "s", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after removing the last finalizer: %v, want NotFound", err)
	}
}

// TestFakeClientsetStatusPatchRemovingFinalizerDeletes removes the finalizer
// exactly as the upstream service controller does: PatchService, a
// strategic-merge patch of the status subresource.
func TestFakeClientsetStatusPatchRemovingFinalizerDeletes(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	svc := createService(t, c, lbService("s"))
	withFinalizer := svc.DeepCopy()
	withFinalizer.Finalizers = []string{servicehelper.LoadBalancerCleanupFinalizer}
	if _, err := servicehelper.PatchService(c.CoreV1(), svc, withFinalizer); err != nil {
		t.Fatalf("adding the finalizer: %v", err)
	}
	if err := c.CoreV1().Services("default").Delete(ctx, "s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleting := getService(t, c, "s")
	if deleting.DeletionTimestamp == nil {
		t.Fatal("service with the finalizer deleted at once")
	}
	updated := deleting.DeepCopy()
	updated.Finalizers = nil
	updated.Status.LoadBalancer = v1.LoadBalancerStatus{}
	if _, err := servicehelper.PatchService(c.CoreV1(), deleting, updated); err != nil {
		t.Fatalf("removing the finalizer: %v", err)
	}
	if _, err := c.CoreV1().Services("default").Get(ctx, "s", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after the status patch removing the finalizer: %v, want NotFound", err)
	}
}

func TestFakeClientsetDeletingObjectRefusesNewFinalizers(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Finalizers: []string{"example.com/a"}}}
	if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().Nodes().Delete(ctx, "n", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CoreV1().Nodes().Patch(ctx, "n", types.MergePatchType, []byte(`{"metadata":{"finalizers":["example.com/a","example.com/b"]}}`), metav1.PatchOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("adding a finalizer to a deleting node: %v, want Invalid", err)
	}
}

func TestFakeClientsetDeletePreconditions(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	n, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []metav1.Preconditions{
		{UID: ptr.To(types.UID("other"))},
		{ResourceVersion: ptr.To("999")},
	} {
		if err := c.CoreV1().Nodes().Delete(ctx, "n", metav1.DeleteOptions{Preconditions: &p}); !apierrors.IsConflict(err) {
			t.Errorf("delete with preconditions %+v: %v, want Conflict", p, err)
		}
	}
	if err := c.CoreV1().Nodes().Delete(ctx, "n", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &n.UID, ResourceVersion: &n.ResourceVersion}}); err != nil {
		t.Errorf("delete with matching preconditions: %v", err)
	}
}

func TestFakeClientsetStatusAndSpecAreSeparate(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	svc := lbService("s")
	svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{Hostname: "ignored.example"}}
	created := createService(t, c, svc)
	if len(created.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("create kept status %v; the API server clears it", created.Status)
	}
	// UpdateStatus writes status (and metadata), not spec.
	edit := created.DeepCopy()
	edit.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{Hostname: "lb.example"}}
	edit.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8"}
	edit.Labels = map[string]string{"a": "b"}
	got, err := c.CoreV1().Services("default").UpdateStatus(ctx, edit, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Ranges  []string
		Ingress []v1.LoadBalancerIngress
		Labels  map[string]string
	}
	want := view{nil, []v1.LoadBalancerIngress{{Hostname: "lb.example"}}, map[string]string{"a": "b"}}
	if diff := cmp.Diff(want, view{got.Spec.LoadBalancerSourceRanges, got.Status.LoadBalancer.Ingress, got.Labels}); diff != "" {
		t.Errorf("after UpdateStatus (-want +got):\n%s", diff)
	}
	// Update writes spec, not status.
	edit = got.DeepCopy()
	edit.Status = v1.ServiceStatus{}
	edit.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8"}
	got, err = c.CoreV1().Services("default").Update(ctx, edit, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want.Ranges = []string{"10.0.0.0/8"}
	if diff := cmp.Diff(want, view{got.Spec.LoadBalancerSourceRanges, got.Status.LoadBalancer.Ingress, got.Labels}); diff != "" {
		t.Errorf("after Update (-want +got):\n%s", diff)
	}

	// Nodes: the same split.
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n"},
		Status:     v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
	n, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions[0].Status = v1.ConditionFalse
	n.Spec.ProviderID = "fake://n"
	n, err = c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.ProviderID != "fake://n" || n.Status.Conditions[0].Status != v1.ConditionTrue {
		t.Errorf("node Update: providerID %q, Ready %s; want fake://n, True (status kept)", n.Spec.ProviderID, n.Status.Conditions[0].Status)
	}
	n.Status.Conditions[0].Status = v1.ConditionFalse
	n.Spec.ProviderID = "fake://other"
	n, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.ProviderID != "fake://n" || n.Status.Conditions[0].Status != v1.ConditionFalse {
		t.Errorf("node UpdateStatus: providerID %q, Ready %s; want fake://n (spec kept), False", n.Spec.ProviderID, n.Status.Conditions[0].Status)
	}
}

func TestFakeClientsetServiceDefaulting(t *testing.T) {
	v4, v6 := []v1.IPFamily{v1.IPv4Protocol}, []v1.IPFamily{v1.IPv6Protocol}
	dual := []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	single, prefer, require := ptr.To(v1.IPFamilyPolicySingleStack), ptr.To(v1.IPFamilyPolicyPreferDualStack), ptr.To(v1.IPFamilyPolicyRequireDualStack)
	cluster := ptr.To(v1.ServiceInternalTrafficPolicyCluster)
	http := func(nodePort int32) []v1.ServicePort {
		return []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(80), NodePort: nodePort}}
	}
	for _, tc := range []struct {
		name     string
		families []v1.IPFamily // the cluster's
		spec     v1.ServiceSpec
		want     v1.ServiceSpec
	}{{
		name: "ClusterIP",
		spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, Ports: http(0), ClusterIP: "10.96.0.2", ClusterIPs: []string{"10.96.0.2"},
			SessionAffinity: v1.ServiceAffinityNone, IPFamilies: v4, IPFamilyPolicy: single, InternalTrafficPolicy: cluster,
		},
	}, {
		name: "LoadBalancer",
		spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("")}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeLoadBalancer, Ports: http(30000), ClusterIP: "10.96.0.2", ClusterIPs: []string{"10.96.0.2"},
			SessionAffinity: v1.ServiceAffinityNone, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			IPFamilies: v4, IPFamilyPolicy: single, AllocateLoadBalancerNodePorts: ptr.To(true), InternalTrafficPolicy: cluster,
		},
	}, {
		name: "LoadBalancer, externalTrafficPolicy Local, UDP, ClientIP affinity",
		spec: v1.ServiceSpec{
			Type: v1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal,
			SessionAffinity: v1.ServiceAffinityClientIP,
			Ports:           []v1.ServicePort{{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns")}},
		},
		want: v1.ServiceSpec{
			Type:      v1.ServiceTypeLoadBalancer,
			Ports:     []v1.ServicePort{{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns"), NodePort: 30000}},
			ClusterIP: "10.96.0.2", ClusterIPs: []string{"10.96.0.2"},
			SessionAffinity:       v1.ServiceAffinityClientIP,
			SessionAffinityConfig: &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(v1.DefaultClientIPServiceAffinitySeconds)}},
			ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 30001,
			IPFamilies: v4, IPFamilyPolicy: single, AllocateLoadBalancerNodePorts: ptr.To(true), InternalTrafficPolicy: cluster,
		},
	}, {
		name: "LoadBalancer without node ports",
		spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false), Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeLoadBalancer, Ports: http(0), ClusterIP: "10.96.0.2", ClusterIPs: []string{"10.96.0.2"},
			SessionAffinity: v1.ServiceAffinityNone, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			IPFamilies: v4, IPFamilyPolicy: single, AllocateLoadBalancerNodePorts: ptr.To(false), InternalTrafficPolicy: cluster,
		},
	}, {
		name: "NodePort with a requested port and cluster IP",
		spec: v1.ServiceSpec{Type: v1.ServiceTypeNodePort, ClusterIP: "10.96.7.7", Ports: []v1.ServicePort{{Name: "http", Port: 80, NodePort: 31000}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeNodePort, Ports: http(31000), ClusterIP: "10.96.7.7", ClusterIPs: []string{"10.96.7.7"},
			SessionAffinity: v1.ServiceAffinityNone, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			IPFamilies: v4, IPFamilyPolicy: single, InternalTrafficPolicy: cluster,
		},
	}, {
		name: "headless",
		spec: v1.ServiceSpec{ClusterIP: v1.ClusterIPNone, Selector: map[string]string{"app": "a"}, Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, Ports: http(0), Selector: map[string]string{"app": "a"}, ClusterIP: v1.ClusterIPNone, ClusterIPs: []string{v1.ClusterIPNone},
			SessionAffinity: v1.ServiceAffinityNone, IPFamilies: v4, IPFamilyPolicy: single, InternalTrafficPolicy: cluster,
		},
	}, {
		name: "ExternalName",
		spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "db.example"},
		want: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "db.example", SessionAffinity: v1.ServiceAffinityNone},
	}, {
		name:     "dual-stack cluster, default SingleStack",
		families: dual,
		spec:     v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeLoadBalancer, Ports: http(30000), ClusterIP: "10.96.0.2", ClusterIPs: []string{"10.96.0.2"},
			SessionAffinity: v1.ServiceAffinityNone, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			IPFamilies: v4, IPFamilyPolicy: single, AllocateLoadBalancerNodePorts: ptr.To(true), InternalTrafficPolicy: cluster,
		},
	}, {
		name:     "dual-stack cluster, PreferDualStack",
		families: dual,
		spec:     v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, IPFamilyPolicy: prefer, Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeLoadBalancer, Ports: http(30000), ClusterIP: "10.96.0.2", ClusterIPs: []string{"10.96.0.2", "fd00:10:96::2"},
			SessionAffinity: v1.ServiceAffinityNone, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyCluster,
			IPFamilies: dual, IPFamilyPolicy: prefer, AllocateLoadBalancerNodePorts: ptr.To(true), InternalTrafficPolicy: cluster,
		},
	}, {
		name:     "dual-stack cluster, RequireDualStack with IPv6 first",
		families: dual,
		spec:     v1.ServiceSpec{IPFamilyPolicy: require, IPFamilies: v6, Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, Ports: http(0), ClusterIP: "fd00:10:96::2", ClusterIPs: []string{"fd00:10:96::2", "10.96.0.2"},
			SessionAffinity: v1.ServiceAffinityNone, IPFamilies: []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}, IPFamilyPolicy: require, InternalTrafficPolicy: cluster,
		},
	}, {
		name:     "single-stack cluster, PreferDualStack",
		families: v6,
		spec:     v1.ServiceSpec{IPFamilyPolicy: prefer, Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, Ports: http(0), ClusterIP: "fd00:10:96::2", ClusterIPs: []string{"fd00:10:96::2"},
			SessionAffinity: v1.ServiceAffinityNone, IPFamilies: v6, IPFamilyPolicy: prefer, InternalTrafficPolicy: cluster,
		},
	}, {
		name:     "two cluster IPs imply the families and RequireDualStack",
		families: dual,
		spec:     v1.ServiceSpec{ClusterIPs: []string{"fd00:10:96::9", "10.96.0.9"}, Ports: []v1.ServicePort{{Name: "http", Port: 80}}},
		want: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, Ports: http(0), ClusterIP: "fd00:10:96::9", ClusterIPs: []string{"fd00:10:96::9", "10.96.0.9"},
			SessionAffinity: v1.ServiceAffinityNone, IPFamilies: []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol}, IPFamilyPolicy: require, InternalTrafficPolicy: cluster,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFake(t, harness.FakeOptions{IPFamilies: tc.families})
			got := createService(t, c, &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "s"}, Spec: tc.spec})
			if diff := cmp.Diff(tc.want, got.Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFakeClientsetServiceInvalid(t *testing.T) {
	for _, tc := range []struct {
		name     string
		families []v1.IPFamily
		spec     v1.ServiceSpec
	}{
		{"RequireDualStack on a single-stack cluster", nil, v1.ServiceSpec{IPFamilyPolicy: ptr.To(v1.IPFamilyPolicyRequireDualStack)}},
		{"family not configured", nil, v1.ServiceSpec{IPFamilies: []v1.IPFamily{v1.IPv6Protocol}}},
		{"two families with SingleStack", []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}, v1.ServiceSpec{IPFamilyPolicy: ptr.To(v1.IPFamilyPolicySingleStack), IPFamilies: []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}}},
		{"cluster IP out of range", nil, v1.ServiceSpec{ClusterIP: "192.168.0.1"}},
		{"cluster IP already allocated", nil, v1.ServiceSpec{ClusterIP: "10.96.0.2"}},
		{"node port out of range", nil, v1.ServiceSpec{Type: v1.ServiceTypeNodePort, Ports: []v1.ServicePort{{Port: 80, NodePort: 80}}}},
		{"node port already allocated", nil, v1.ServiceSpec{Type: v1.ServiceTypeNodePort, Ports: []v1.ServicePort{{Port: 80, NodePort: 30000}}}},
		{"node port on a ClusterIP Service", nil, v1.ServiceSpec{Ports: []v1.ServicePort{{Port: 80, NodePort: 30100}}}},
		{"health check node port without Local", nil, v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, HealthCheckNodePort: 30100, Ports: []v1.ServicePort{{Port: 80}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFake(t, harness.FakeOptions{IPFamilies: tc.families})
			createService(t, c, lbService("first")) // holds 10.96.0.2 and node port 30000
			_, err := c.CoreV1().Services("default").Create(t.Context(), &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "s"}, Spec: tc.spec}, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v, want Invalid", err)
			}
		})
	}
}

func TestFakeClientsetNodePortsAreUniqueAndReleased(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	a := createService(t, c, lbService("a"))
	b := createService(t, c, lbService("b"))
	if a.Spec.Ports[0].NodePort == b.Spec.Ports[0].NodePort {
		t.Fatalf("two services got node port %d", a.Spec.Ports[0].NodePort)
	}
	want := lbService("c")
	want.Spec.Ports[0].NodePort = a.Spec.Ports[0].NodePort
	want.Spec.ClusterIP = a.Spec.ClusterIP
	if _, err := c.CoreV1().Services("default").Create(ctx, want.DeepCopy(), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("requesting a's node port while a exists: %v, want Invalid", err)
	}
	// A Service being deleted still holds its ports; they are released when
	// the last finalizer goes.
	if _, err := c.CoreV1().Services("default").Patch(ctx, "a", types.MergePatchType, []byte(`{"metadata":{"finalizers":["example.com/f"]}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().Services("default").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services("default").Create(ctx, want.DeepCopy(), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("requesting a's node port while a is being deleted: %v, want Invalid", err)
	}
	if _, err := c.CoreV1().Services("default").Patch(ctx, "a", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	got := createService(t, c, want.DeepCopy())
	if diff := cmp.Diff([]any{a.Spec.Ports[0].NodePort, a.Spec.ClusterIP}, []any{got.Spec.Ports[0].NodePort, got.Spec.ClusterIP}); diff != "" {
		t.Errorf("c did not get a's released node port and IP (-want +got):\n%s", diff)
	}
}

func TestFakeClientsetServiceTypeChangeReleasesNodePorts(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	svc := lbService("a")
	svc.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	a := createService(t, c, svc)
	nodePort, hc := a.Spec.Ports[0].NodePort, a.Spec.HealthCheckNodePort
	a.Spec.Type = v1.ServiceTypeClusterIP
	a, err := c.CoreV1().Services("default").Update(ctx, a, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		NodePort, HealthCheckNodePort int32
		ETP                           v1.ServiceExternalTrafficPolicy
		Allocate                      *bool
	}
	if diff := cmp.Diff(view{}, view{a.Spec.Ports[0].NodePort, a.Spec.HealthCheckNodePort, a.Spec.ExternalTrafficPolicy, a.Spec.AllocateLoadBalancerNodePorts}); diff != "" {
		t.Errorf("LoadBalancer fields after the change to ClusterIP (-want +got):\n%s", diff)
	}
	b := lbService("b")
	b.Spec.Ports[0].NodePort = nodePort
	b.Spec.Ports = append(b.Spec.Ports, v1.ServicePort{Name: "https", Port: 443, NodePort: hc})
	createService(t, c, b) // both released ports are free again
}

func TestFakeClientsetServiceUpdateKeepsAllocations(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	svc := lbService("a")
	svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: "https", Port: 443})
	a := createService(t, c, svc)
	// A full update written from scratch (no allocated values), with the
	// ports reordered, one added and the type changed to NodePort.
	put := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeNodePort, Ports: []v1.ServicePort{
			{Name: "https", Port: 443}, {Name: "metrics", Port: 9090}, {Name: "http", Port: 80},
		}},
	}
	got, err := c.CoreV1().Services("default").Update(ctx, put, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		ClusterIPs []string
		NodePorts  map[string]int32
	}
	nodePorts := func(s *v1.Service) map[string]int32 {
		m := map[string]int32{}
		for _, p := range s.Spec.Ports {
			m[p.Name] = p.NodePort
		}
		return m
	}
	want := view{a.Spec.ClusterIPs, nodePorts(a)}
	want.NodePorts["metrics"] = 30002
	if diff := cmp.Diff(want, view{got.Spec.ClusterIPs, nodePorts(got)}); diff != "" {
		t.Errorf("allocations after update (-want +got):\n%s", diff)
	}
}

func TestFakeClientsetIngressIPModeDefaultsToVIP(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	a := createService(t, c, lbService("a"))
	a.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{
		{IP: "192.0.2.1"},
		{IP: "192.0.2.2", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)},
		{Hostname: "lb.example"},
	}
	patched := a.DeepCopy()
	a.Status = v1.ServiceStatus{}
	got, err := servicehelper.PatchService(c.CoreV1(), a, patched)
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.LoadBalancerIngress{
		{IP: "192.0.2.1", IPMode: ptr.To(v1.LoadBalancerIPModeVIP)},
		{IP: "192.0.2.2", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)},
		{Hostname: "lb.example"},
	}
	if diff := cmp.Diff(want, got.Status.LoadBalancer.Ingress); diff != "" {
		t.Errorf("ingress after the status patch (-want +got):\n%s", diff)
	}
}

func TestFakeClientsetSeededObjects(t *testing.T) {
	seeded := lbService("a")
	seeded.Spec.Ports[0].NodePort = 30000
	c := harness.NewFakeClientset(harness.FakeOptions{}, seeded, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "kept"}})
	ctx := t.Context()
	a := getService(t, c, "a")
	n, err := c.CoreV1().Nodes().Get(ctx, "n", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.UID == "" || a.ResourceVersion == "" || a.Spec.ClusterIP == "" || n.UID != "kept" || n.ResourceVersion == "" {
		t.Errorf("seeded objects: service uid %q rv %q clusterIP %q; node uid %q rv %q", a.UID, a.ResourceVersion, a.Spec.ClusterIP, n.UID, n.ResourceVersion)
	}
	if seeded.UID != "" {
		t.Errorf("NewFakeClientset modified the object it was given")
	}
	b := createService(t, c, lbService("b"))
	if b.Spec.Ports[0].NodePort == 30000 {
		t.Errorf("new service got the seeded service's node port")
	}
}

// TestFakeClientsetGracefulDeleteThroughInformer drives the emulation as
// the service controller sees it: an informer observes the deletion
// timestamp, and the Delete event once the status patch removes the last
// finalizer.
func TestFakeClientsetGracefulDeleteThroughInformer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := harness.NewFakeClientset(harness.FakeOptions{})
		ctx, cancel := context.WithCancel(t.Context())
		factory := informers.NewSharedInformerFactory(c, 0)
		var seen []string
		record := func(kind string, obj any) {
			svc := obj.(*v1.Service)
			seen = append(seen, fmt.Sprintf("%s deleting=%t finalizers=%v", kind, svc.DeletionTimestamp != nil, svc.Finalizers))
		}
		_, err := factory.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { record("add", obj) },
			UpdateFunc: func(_, obj any) { record("update", obj) },
			DeleteFunc: func(obj any) { record("delete", obj) },
		})
		if err != nil {
			t.Fatal(err)
		}
		factory.Start(ctx.Done())
		defer func() {
			cancel()
			factory.Shutdown()
		}()
		factory.WaitForCacheSync(ctx.Done())

		svc := createService(t, c, lbService("s"))
		withFinalizer := svc.DeepCopy()
		withFinalizer.Finalizers = []string{servicehelper.LoadBalancerCleanupFinalizer}
		if _, err := servicehelper.PatchService(c.CoreV1(), svc, withFinalizer); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().Services("default").Delete(ctx, "s", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		deleting, err := factory.Core().V1().Services().Lister().Services("default").Get("s")
		if err != nil {
			t.Fatalf("informer lost the service being deleted: %v", err)
		}
		removed := deleting.DeepCopy()
		removed.Finalizers = nil
		if _, err := servicehelper.PatchService(c.CoreV1(), deleting.DeepCopy(), removed); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		want := []string{
			"add deleting=false finalizers=[]",
			"update deleting=false finalizers=[service.kubernetes.io/load-balancer-cleanup]",
			"update deleting=true finalizers=[service.kubernetes.io/load-balancer-cleanup]",
			// The Delete event carries the last stored state (see NewFakeClientset).
			"delete deleting=true finalizers=[service.kubernetes.io/load-balancer-cleanup]",
		}
		if diff := cmp.Diff(want, seen); diff != "" {
			t.Errorf("informer events (-want +got):\n%s", diff)
		}
	})
}

func TestFakeClientsetNoOpWriteIsNotStored(t *testing.T) {
	c := newFake(t, harness.FakeOptions{})
	ctx := t.Context()
	svc := createService(t, c, lbService("s"))
	w, err := c.CoreV1().Services("default").Watch(ctx, metav1.ListOptions{ResourceVersion: svc.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	patched, err := c.CoreV1().Services("default").Patch(ctx, "s", types.StrategicMergePatchType, []byte(`{"spec":{"type":"LoadBalancer"}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated, err := c.CoreV1().Services("default").Update(ctx, &v1.Service{ObjectMeta: svc.ObjectMeta, Spec: lbService("s").Spec}, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{svc.ResourceVersion, svc.ResourceVersion}, []string{patched.ResourceVersion, updated.ResourceVersion}); diff != "" {
		t.Errorf("resourceVersion after no-op patch and update (-want +got):\n%s", diff)
	}
	// A real change is written, and is the first event the watch sees.
	if _, err := c.CoreV1().Services("default").Patch(ctx, "s", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	if got := ev.Object.(*v1.Service); got.Labels["a"] != "b" {
		t.Errorf("first watch event: %s of %v, want the label change", ev.Type, got.Labels)
	}
}
