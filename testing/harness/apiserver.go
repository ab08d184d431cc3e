package harness

import (
	"fmt"
	"k8s.io/apimachinery/pkg/watch"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"sync"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"
)

// FakeOptions configures [NewFakeClientset]. The zero value means defaults.
type FakeOptions struct {
	// IPFamilies are the cluster's Service IP families, primary first
	// (default [IPv4]; at most one of each family).
	IPFamilies []v1.IPFamily
	// ServiceCIDRs are the Service cluster IP ranges, one per family in
	// IPFamilies' order (default 10.96.0.0/16 for IPv4, fd00:10:96::/112
	// for IPv6).
	ServiceCIDRs []netip.Prefix
	// NodePortRange is the range node ports and health check node ports
	// are allocated from (default 30000-32767, as --service-node-port-range).
	NodePortRange utilnet.PortRange
	// Clock stamps creationTimestamp and deletionTimestamp (default the
	// real clock, which inside a synctest bubble is the bubble's).
	Clock clock.PassiveClock
}

// NewFakeClientset returns client-go's fake clientset over a plain object
// tracker (strategic-merge, merge and JSON patches work; server-side apply
// does not: client-go's field-managed tracker builds a REST mapper on every
// write, half the CPU time of a 1,000-Service run, and no controller here
// applies) with
// reactors that emulate what controllers rely on from a real API server.
// objects are stored as if they had been created before (they get the same
// metadata and Service defaulting and allocation as a create, keeping a UID,
// creationTimestamp or allocation they already carry); an object the
// emulation rejects, or invalid options, panic, as fake.NewClientset does.
//
// Emulated, for every resource (Nodes, Services, Events, Leases, ...):
//   - create: metadata.uid (deterministic: the n-th object created gets a
//     UID ending in n), creationTimestamp (Clock, whole seconds),
//     resourceVersion and, for objects with a spec except Nodes and Leases,
//     generation 1; a name from generateName; a create carrying a
//     resourceVersion is refused (BadRequest) and its deletionTimestamp
//     dropped;
//   - resourceVersion: a decimal counter per resource, bumped by every
//     stored write, equal to the one client-go's tracker serves as a list's
//     resourceVersion and starts a watch from, so a watch from an object's
//     resourceVersion sees exactly the later changes (the API server's
//     counter is global; clients may only compare them for equality); an
//     update or patch that changes nothing is not written (same
//     resourceVersion, no watch event), as with the API server's storage;
//   - update and patch: an update whose object carries a resourceVersion
//     other than the stored one, or a patch whose body sets a stale
//     metadata.resourceVersion, fails with Conflict; uid, creationTimestamp,
//     deletionTimestamp and generation cannot be changed by a write;
//     generation is bumped when the spec changes;
//   - subresources of Services and Nodes: an update or patch of the object
//     keeps the stored status, one of "status" keeps the stored spec
//     (metadata, finalizers included, is written through both, as the API
//     server does: the service controller removes its finalizer with a
//     strategic-merge patch of the status subresource);
//   - graceful deletion: deleting an object that has finalizers sets
//     deletionTimestamp (Clock) and deletionGracePeriodSeconds 0 and keeps
//     it (watchers see a Modified event); the update or patch that leaves
//     such an object with no finalizers deletes it (watchers see a Deleted
//     event, carrying the last stored state, that is the one with the
//     finalizers, where the API server's carries the final one); adding a
//     finalizer to an object being deleted is refused (Invalid); delete
//     preconditions (uid, resourceVersion) are checked (Conflict);
//   - Service defaulting, allocation and release as the API server does:
//     type ClusterIP, sessionAffinity None (and its ClientIP timeout),
//     port protocol TCP and targetPort = port, internalTrafficPolicy
//     Cluster, externalTrafficPolicy Cluster for NodePort and LoadBalancer,
//     allocateLoadBalancerNodePorts true; ipFamilyPolicy SingleStack and
//     ipFamilies from the cluster's families (PreferDualStack and
//     RequireDualStack get both on a dual-stack cluster; families the user
//     set, or implied by the clusterIPs set, are kept; headless Services
//     without a selector default to RequireDualStack); clusterIPs allocated
//     from ServiceCIDRs unless set or "None"; nodePorts allocated, unique in
//     NodePortRange, for NodePort and LoadBalancer ports without one (not
//     with allocateLoadBalancerNodePorts false); healthCheckNodePort for a
//     LoadBalancer with externalTrafficPolicy Local; a requested cluster IP
//     or node port already allocated, or a node port out of range, is
//     Invalid; status is cleared on create; an ingress IP without ipMode
//     gets ipMode VIP on every write. An update keeps allocations the new
//     object omits (as the API server's patchAllocatedValues does, so a
//     changed type or port list keeps its node ports), a type change drops
//     the fields the new type does not use (node ports, health check node
//     port, cluster IPs and families for ExternalName) and releases what
//     was dropped; deleting a Service releases everything it held.
//
// Not emulated: validation beyond the checks above, admission (no webhook,
// quota, namespace lifecycle or defaulting of other kinds), create on update
// (PUT of a missing object is NotFound even for Leases and Events), the
// garbage collector (ownerReferences and the orphan and foregroundDeletion
// finalizers of propagation policies are ignored), grace periods of Pods,
// status/spec separation for kinds other than Services and Nodes,
// server-side apply and delete-collection beyond what client-go's fake
// does (they bypass this emulation; an applied object keeps the
// resourceVersion it had), writes through Tracker() (they bypass it too and
// put resourceVersions out of step), watch bookmarks, resourceVersion
// arguments of get and list, and field selectors. Lists and watches are
// client-go's fake's.
//
// Every call is serialized by the fake's lock, as all fake clientset calls
// are; the clientset is safe for concurrent use.
func NewFakeClientset(opts FakeOptions, objects ...runtime.Object) *fake.Clientset {
	s, err := newAPIServer(opts)
	if err != nil {
		panic(fmt.Sprintf("harness.NewFakeClientset: %v", err))
	}
	seeded := make([]runtime.Object, 0, len(objects))
	for _, obj := range objects {
		items := []runtime.Object{obj}
		if meta.IsListType(obj) {
			items, err = meta.ExtractList(obj)
			if err != nil {
				panic(fmt.Sprintf("harness.NewFakeClientset: %v", err))
			}
		}
		for _, item := range items {
			item = item.DeepCopyObject()
			if err := s.seed(item); err != nil {
				panic(fmt.Sprintf("harness.NewFakeClientset: %v", err))
			}
			seeded = append(seeded, item)
		}
	}
	// The objects live in a plain tracker: client-go's field-managed one
	// (fake.NewClientset's) builds a REST mapper on every write, which made
	// half the CPU time of a 1,000-Service run. Its reactors stay behind
	// these for what nothing here handles.
	cs := fake.NewClientset()
	plain := k8stesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())
	for _, obj := range seeded {
		if err := plain.Add(obj); err != nil {
			panic(fmt.Sprintf("harness.NewFakeClientset: %v", err))
		}
	}
	s.tracker = plain
	cs.PrependReactor("*", "*", k8stesting.ObjectReaction(plain))
	cs.PrependReactor("*", "*", s.react)
	cs.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if w, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = w.ListOptions
		}
		w, err := plain.Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		return true, w, nil
	})
	return cs
}

// apiServer is the state behind one emulated clientset.
type apiServer struct {
	families  []v1.IPFamily
	cidrs     map[v1.IPFamily]netip.Prefix
	portRange utilnet.PortRange
	clock     clock.PassiveClock
	tracker   k8stesting.ObjectTracker

	mu       sync.Mutex
	rvs      map[schema.GroupVersionResource]int64 // last resourceVersion stored, per resource
	uids     int64                                 // objects created
	ports    map[int32]string
	ips      map[netip.Addr]string
	nextPort int32
	nextIP   map[v1.IPFamily]netip.Addr
}

func newAPIServer(opts FakeOptions) (*apiServer, error) {
	s := &apiServer{
		families:  slices.Clone(opts.IPFamilies),
		cidrs:     map[v1.IPFamily]netip.Prefix{},
		portRange: opts.NodePortRange,
		clock:     opts.Clock,
		ports:     map[int32]string{},
		ips:       map[netip.Addr]string{},
		nextIP:    map[v1.IPFamily]netip.Addr{},
		rvs:       map[schema.GroupVersionResource]int64{},
	}
	if len(s.families) == 0 {
		s.families = []v1.IPFamily{v1.IPv4Protocol}
	}
	if len(s.families) > 2 || (len(s.families) == 2 && s.families[0] == s.families[1]) {
		return nil, fmt.Errorf("IPFamilies %v: want one family or one of each", s.families)
	}
	if len(opts.ServiceCIDRs) != 0 && len(opts.ServiceCIDRs) != len(s.families) {
		return nil, fmt.Errorf("ServiceCIDRs %v: want one per family of %v", opts.ServiceCIDRs, s.families)
	}
	for i, fam := range s.families {
		var p netip.Prefix
		switch {
		case len(opts.ServiceCIDRs) > 0:
			p = opts.ServiceCIDRs[i].Masked()
		case fam == v1.IPv4Protocol:
			p = netip.MustParsePrefix("10.96.0.0/16")
		case fam == v1.IPv6Protocol:
			p = netip.MustParsePrefix("fd00:10:96::/112")
		default:
			return nil, fmt.Errorf("unknown IP family %q", fam)
		}
		if !p.IsValid() || familyOf(p.Addr()) != fam {
			return nil, fmt.Errorf("ServiceCIDRs[%d] %v is not a valid %s range", i, p, fam)
		}
		s.cidrs[fam] = p
		// The first address after the network address is the kubernetes
		// Service's; start after it.
		s.nextIP[fam] = p.Addr().Next().Next()
	}
	if s.portRange.Size == 0 {
		s.portRange = utilnet.PortRange{Base: 30000, Size: 2768}
	}
	if s.portRange.Base <= 0 || s.portRange.Base+s.portRange.Size-1 > 65535 {
		return nil, fmt.Errorf("NodePortRange %v is not a port range", s.portRange)
	}
	s.nextPort = int32(s.portRange.Base)
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	return s, nil
}

// react is the reactor in front of client-go's object reaction. It handles
// create, update, patch and delete of whole objects and of the status
// subresource, and leaves everything else (get, list, watch, apply,
// delete-collection, other subresources) to the fake's own reaction.
func (s *apiServer) react(action k8stesting.Action) (bool, runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch a := action.(type) {
	case k8stesting.CreateActionImpl:
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		obj, err := s.create(a)
		return true, obj, err
	case k8stesting.UpdateActionImpl:
		if sub := a.GetSubresource(); sub != "" && sub != "status" {
			return false, nil, nil
		}
		obj, err := s.update(a)
		return true, obj, err
	case k8stesting.PatchActionImpl:
		if a.GetPatchType() == types.ApplyPatchType {
			// Server-side apply: left to the tracker, which refuses it
			// (see NewFakeClientset); keep the resourceVersion count in
			// step if it ever succeeds.
			handled, obj, err := k8stesting.ObjectReaction(s.tracker)(a)
			if err == nil {
				s.storedRV(a.GetResource())
			}
			return handled, obj, err
		}
		if sub := a.GetSubresource(); sub != "" && sub != "status" {
			return false, nil, nil
		}
		obj, err := s.patch(a)
		return true, obj, err
	case k8stesting.DeleteActionImpl:
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		obj, err := s.delete(a)
		return true, obj, err
	}
	return false, nil, nil
}

// seed prepares an object given to NewFakeClientset as stored state.
func (s *apiServer) seed(obj runtime.Object) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	gr := groupResource(obj)
	if m.GetUID() == "" {
		m.SetUID(s.newUID())
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(s.now())
	}
	if m.GetGeneration() == 0 && tracksGeneration(obj) {
		m.SetGeneration(1)
	}
	if svc, ok := obj.(*v1.Service); ok {
		defaultService(svc)
		alloc, err := s.allocate(gr, nil, svc)
		if err != nil {
			return err
		}
		alloc.commit()
	}
	gvr := seedResource(obj)
	m.SetResourceVersion(s.nextRV(gvr))
	s.storedRV(gvr)
	return nil
}

func (s *apiServer) create(a k8stesting.CreateActionImpl) (runtime.Object, error) {
	obj := a.GetObject()
	gr := a.GetResource().GroupResource()
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	if m.GetName() == "" {
		if m.GetGenerateName() == "" {
			return nil, apierrors.NewInvalid(groupKind(obj), "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
		}
		m.SetName(m.GetGenerateName() + nameSuffix(s.uids+1))
	}
	if m.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	m.SetUID(s.newUID())
	m.SetCreationTimestamp(s.now())
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetGeneration(0)
	if tracksGeneration(obj) {
		m.SetGeneration(1)
	}
	var alloc *allocation
	if svc, ok := obj.(*v1.Service); ok {
		svc.Status = v1.ServiceStatus{}
		defaultService(svc)
		if alloc, err = s.allocate(gr, nil, svc); err != nil {
			return nil, err
		}
	}
	if gr.Resource == "events" && gr.Group == "" {
		// Event recorders name an Event "<object>.<UnixNano hex>"; inside a
		// synctest bubble time stands still between two Events about one
		// object, so the second would collide with the first and be lost.
		// A real API server never sees that: keep both.
		base := m.GetName()
		for i := 1; ; i++ {
			if _, err := s.tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName()); apierrors.IsNotFound(err) {
				break
			}
			m.SetName(fmt.Sprintf("%s.%d", base, i))
		}
	}
	m.SetResourceVersion(s.nextRV(a.GetResource()))
	if err := s.tracker.Create(a.GetResource(), obj, a.GetNamespace(), a.CreateOptions); err != nil {
		return nil, err
	}
	s.storedRV(a.GetResource())
	alloc.commit()
	return s.tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
}

func (s *apiServer) update(a k8stesting.UpdateActionImpl) (runtime.Object, error) {
	obj := a.GetObject()
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	old, err := s.tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
	if err != nil {
		return nil, err
	}
	oldMeta, _ := meta.Accessor(old)
	if rv := m.GetResourceVersion(); rv != "" && rv != oldMeta.GetResourceVersion() {
		return nil, conflict(a.GetResource().GroupResource(), m.GetName())
	}
	return s.write(a.GetResource(), a.GetNamespace(), a.GetSubresource(), old, obj, func(obj runtime.Object) error {
		return s.tracker.Update(a.GetResource(), obj, a.GetNamespace(), a.UpdateOptions)
	})
}

func (s *apiServer) patch(a k8stesting.PatchActionImpl) (runtime.Object, error) {
	old, err := s.tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return nil, err
	}
	// Apply the patch as client-go's fake does, on a scratch tracker
	// holding only the stored object.
	scratch := k8stesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())
	if err := scratch.Create(a.GetResource(), old.DeepCopyObject(), a.GetNamespace()); err != nil {
		return nil, err
	}
	_, obj, err := k8stesting.ObjectReaction(scratch)(a)
	if err != nil {
		return nil, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	oldMeta, _ := meta.Accessor(old)
	// The patched object carries the stored resourceVersion unless the
	// patch set one: a different one is a stale precondition.
	if rv := m.GetResourceVersion(); rv != "" && rv != oldMeta.GetResourceVersion() {
		return nil, conflict(a.GetResource().GroupResource(), a.GetName())
	}
	return s.write(a.GetResource(), a.GetNamespace(), a.GetSubresource(), old, obj, func(obj runtime.Object) error {
		return s.tracker.Patch(a.GetResource(), obj, a.GetNamespace(), a.PatchOptions)
	})
}

// write stores obj over old as an update or patch of subresource ("" or
// "status") does, with store writing to the tracker.
func (s *apiServer) write(gvr schema.GroupVersionResource, ns, subresource string, old, obj runtime.Object, store func(runtime.Object) error) (runtime.Object, error) {
	gr := gvr.GroupResource()
	m, _ := meta.Accessor(obj)
	oldMeta, _ := meta.Accessor(old)
	if m.GetUID() != "" && m.GetUID() != oldMeta.GetUID() {
		return nil, conflict(gr, m.GetName())
	}
	m.SetUID(oldMeta.GetUID())
	m.SetCreationTimestamp(oldMeta.GetCreationTimestamp())
	m.SetGeneration(oldMeta.GetGeneration())
	m.SetDeletionTimestamp(oldMeta.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(oldMeta.GetDeletionGracePeriodSeconds())
	deleting := oldMeta.GetDeletionTimestamp() != nil
	if deleting {
		if added := newFinalizers(oldMeta.GetFinalizers(), m.GetFinalizers()); len(added) > 0 {
			return nil, apierrors.NewInvalid(groupKind(obj), m.GetName(), field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"),
				fmt.Sprintf("no new finalizers can be added if the object is being deleted, found new finalizers %q", added))})
		}
	}
	keepSpecOrStatus(subresource, old, obj)
	var alloc *allocation
	if svc, ok := obj.(*v1.Service); ok {
		oldSvc := old.(*v1.Service)
		defaultService(svc)
		if subresource == "" {
			var err error
			if alloc, err = s.allocate(gr, oldSvc, svc); err != nil {
				return nil, err
			}
		}
	}
	if tracksGeneration(obj) && !apiequality.Semantic.DeepEqual(specOf(old), specOf(obj)) {
		m.SetGeneration(oldMeta.GetGeneration() + 1)
	}
	if unchanged(old, obj) {
		// As the API server's storage: no write, no new
		// resourceVersion, no watch event.
		return old, nil
	}
	m.SetResourceVersion(s.nextRV(gvr))
	if deleting && len(m.GetFinalizers()) == 0 {
		if err := s.tracker.Delete(gvr, ns, m.GetName()); err != nil {
			return nil, err
		}
		s.release(old)
		return obj, nil
	}
	if err := store(obj); err != nil {
		return nil, err
	}
	s.storedRV(gvr)
	alloc.commit()
	return s.tracker.Get(gvr, ns, m.GetName())
}

func (s *apiServer) delete(a k8stesting.DeleteActionImpl) (runtime.Object, error) {
	gvr, ns, name := a.GetResource(), a.GetNamespace(), a.GetName()
	old, err := s.tracker.Get(gvr, ns, name)
	if err != nil {
		return nil, err
	}
	m, _ := meta.Accessor(old)
	if p := a.DeleteOptions.Preconditions; p != nil {
		if p.UID != nil && *p.UID != m.GetUID() {
			return nil, apierrors.NewConflict(gvr.GroupResource(), name, fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
		}
		if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
			return nil, apierrors.NewConflict(gvr.GroupResource(), name, fmt.Errorf("precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
		}
	}
	if len(m.GetFinalizers()) == 0 {
		if err := s.tracker.Delete(gvr, ns, name); err != nil {
			return nil, err
		}
		s.release(old)
		return old, nil
	}
	if m.GetDeletionTimestamp() != nil {
		return old, nil
	}
	now := s.now()
	var zero int64
	m.SetDeletionTimestamp(&now)
	m.SetDeletionGracePeriodSeconds(&zero)
	m.SetResourceVersion(s.nextRV(gvr))
	if err := s.tracker.Update(gvr, old, ns); err != nil {
		return nil, err
	}
	s.storedRV(gvr)
	return s.tracker.Get(gvr, ns, name)
}

// nextRV returns the resourceVersion client-go's tracker gives the next
// object of gvr it stores: it counts per resource, from 1, and serves that
// count as the list resourceVersion and as the watch start point, so
// stamping the same number on the object keeps list, watch and object
// resourceVersions consistent. Call storedRV once the tracker stored it.
func (s *apiServer) nextRV(gvr schema.GroupVersionResource) string {
	return strconv.FormatInt(s.lastRV(gvr)+1, 10)
}

func (s *apiServer) storedRV(gvr schema.GroupVersionResource) { s.rvs[gvr] = s.lastRV(gvr) + 1 }

func (s *apiServer) lastRV(gvr schema.GroupVersionResource) int64 {
	if rv, ok := s.rvs[gvr]; ok {
		return rv
	}
	return 1
}

// seedResource is the resource client-go's tracker files an added object
// under.
func seedResource(obj runtime.Object) schema.GroupVersionResource {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return schema.GroupVersionResource{}
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
	if gvr.Version == runtime.APIVersionInternal {
		gvr.Version = ""
	}
	return gvr
}

func (s *apiServer) newUID() types.UID {
	s.uids++
	return types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", s.uids))
}

func (s *apiServer) now() metav1.Time { return metav1.NewTime(s.clock.Now()).Rfc3339Copy() }

// nameSuffix is the suffix generateName gets: five lower-case
// alphanumerics, deterministic in n.
func nameSuffix(n int64) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // the API server's alphabet
	b := make([]byte, 5)
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = alphabet[n%int64(len(alphabet))]
		n /= int64(len(alphabet))
	}
	return string(b)
}

func conflict(gr schema.GroupResource, name string) error {
	return apierrors.NewConflict(gr, name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
}

func groupKind(obj runtime.Object) schema.GroupKind {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return obj.GetObjectKind().GroupVersionKind().GroupKind()
	}
	return gvks[0].GroupKind()
}

func groupResource(obj runtime.Object) schema.GroupResource {
	gk := groupKind(obj)
	gvr, _ := meta.UnsafeGuessKindToResource(gk.WithVersion(""))
	return gvr.GroupResource()
}

// unchanged reports whether obj, written over old, equals it but for
// resourceVersion, managedFields and apiVersion and kind.
func unchanged(old, obj runtime.Object) bool {
	cur := obj.DeepCopyObject()
	m, _ := meta.Accessor(cur)
	oldMeta, _ := meta.Accessor(old)
	m.SetResourceVersion(oldMeta.GetResourceVersion())
	m.SetManagedFields(oldMeta.GetManagedFields())
	cur.GetObjectKind().SetGroupVersionKind(old.GetObjectKind().GroupVersionKind())
	return apiequality.Semantic.DeepEqual(old, cur)
}

func newFinalizers(old, cur []string) []string {
	var added []string
	for _, f := range cur {
		if !slices.Contains(old, f) {
			added = append(added, f)
		}
	}
	return added
}

// specOf returns obj's Spec field, or nil when it has none.
func specOf(obj runtime.Object) any {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("Spec")
	if !f.IsValid() {
		return nil
	}
	return f.Interface()
}

// tracksGeneration reports whether the API server maintains
// metadata.generation for obj: kinds with a spec, except Nodes and Leases.
func tracksGeneration(obj runtime.Object) bool {
	switch groupKind(obj) {
	case schema.GroupKind{Kind: "Node"}, schema.GroupKind{Group: "coordination.k8s.io", Kind: "Lease"}:
		return false
	}
	return specOf(obj) != nil
}

// keepSpecOrStatus applies the status/spec split of Services and Nodes: a
// write to the object keeps the stored status, one to "status" keeps the
// stored spec.
func keepSpecOrStatus(subresource string, old, obj runtime.Object) {
	switch o := obj.(type) {
	case *v1.Service:
		if subresource == "status" {
			o.Spec = *old.(*v1.Service).Spec.DeepCopy()
		} else {
			o.Status = *old.(*v1.Service).Status.DeepCopy()
		}
	case *v1.Node:
		if subresource == "status" {
			o.Spec = *old.(*v1.Node).Spec.DeepCopy()
		} else {
			o.Status = *old.(*v1.Node).Status.DeepCopy()
		}
	}
}

// defaultService applies the API server's defaults for v1.Service that do
// not depend on the cluster (SetDefaults_Service).
func defaultService(svc *v1.Service) {
	spec := &svc.Spec
	if spec.Type == "" {
		spec.Type = v1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = v1.ServiceAffinityNone
	}
	if spec.SessionAffinity == v1.ServiceAffinityNone {
		spec.SessionAffinityConfig = nil
	}
	if spec.SessionAffinity == v1.ServiceAffinityClientIP &&
		(spec.SessionAffinityConfig == nil || spec.SessionAffinityConfig.ClientIP == nil || spec.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil) {
		timeout := v1.DefaultClientIPServiceAffinitySeconds
		spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = v1.ProtocolTCP
		}
		if p.TargetPort == intstr.FromInt32(0) || p.TargetPort == intstr.FromString("") {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if (spec.Type == v1.ServiceTypeNodePort || spec.Type == v1.ServiceTypeLoadBalancer) && spec.ExternalTrafficPolicy == "" {
		spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyCluster
	}
	if spec.Type != v1.ServiceTypeExternalName && spec.InternalTrafficPolicy == nil {
		p := v1.ServiceInternalTrafficPolicyCluster
		spec.InternalTrafficPolicy = &p
	}
	if spec.Type == v1.ServiceTypeLoadBalancer && spec.AllocateLoadBalancerNodePorts == nil {
		t := true
		spec.AllocateLoadBalancerNodePorts = &t
	}
	for i := range svc.Status.LoadBalancer.Ingress {
		ing := &svc.Status.LoadBalancer.Ingress[i]
		if ing.IP != "" && ing.IPMode == nil {
			vip := v1.LoadBalancerIPModeVIP
			ing.IPMode = &vip
		}
	}
}
