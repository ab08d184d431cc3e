package harness

import (
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// allocation is what a Service holds after a write: committed once the
// write is stored, dropped otherwise.
type allocation struct {
	s        *apiServer
	key      string
	old, cur *v1.Service
}

// commit records cur's node ports and cluster IPs as held by the Service
// and releases those old held that cur no longer does. A nil allocation
// commits nothing.
func (a *allocation) commit() {
	if a == nil {
		return
	}
	if a.old != nil {
		a.s.releaseService(a.old)
	}
	ports, ips := a.s.serviceResources(a.cur)
	for _, p := range ports {
		a.s.ports[p] = a.key
	}
	for _, ip := range ips {
		a.s.ips[ip] = a.key
	}
}

// release frees what a deleted object held.
func (s *apiServer) release(obj runtime.Object) {
	if svc, ok := obj.(*v1.Service); ok {
		s.releaseService(svc)
	}
}

func (s *apiServer) releaseService(svc *v1.Service) {
	key := serviceKey(svc)
	ports, ips := s.serviceResources(svc)
	for _, p := range ports {
		if s.ports[p] == key {
			delete(s.ports, p)
		}
	}
	for _, ip := range ips {
		if s.ips[ip] == key {
			delete(s.ips, ip)
		}
	}
}

// serviceResources lists the node ports (health check node port included)
// and the cluster IPs inside the Service ranges that svc carries.
func (s *apiServer) serviceResources(svc *v1.Service) ([]int32, []netip.Addr) {
	var ports []int32
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			ports = append(ports, p.NodePort)
		}
	}
	if svc.Spec.HealthCheckNodePort != 0 {
		ports = append(ports, svc.Spec.HealthCheckNodePort)
	}
	var ips []netip.Addr
	for _, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil && s.cidrs[familyOf(a)].Contains(a) {
			ips = append(ips, a)
		}
	}
	return ports, ips
}

func serviceKey(svc *v1.Service) string { return svc.Namespace + "/" + svc.Name }

// allocate defaults svc's cluster-dependent fields and picks its cluster IPs
// and node ports, as the API server's Service REST storage does on create
// (old nil) and update. It changes no state: commit the result once the
// write is stored.
func (s *apiServer) allocate(gr schema.GroupResource, old, svc *v1.Service) (*allocation, error) {
	if old != nil {
		dropTypeDependentFields(old, svc)
		patchAllocatedValues(old, svc)
	}
	a := &allocation{s: s, key: serviceKey(svc), old: old, cur: svc}
	var errs field.ErrorList
	errs = append(errs, s.allocateClusterIPs(a.key, old, svc)...)
	if len(errs) == 0 {
		errs = append(errs, s.allocateNodePorts(a.key, svc)...)
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: gr.Group, Kind: "Service"}, svc.Name, errs)
	}
	return a, nil
}

func needsNodePorts(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer
}

func needsHealthCheckNodePort(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
}

func needsClusterIP(svc *v1.Service) bool { return svc.Spec.Type != v1.ServiceTypeExternalName }

// dropTypeDependentFields clears, when an update changes a Service's type,
// the values of the old type that the new one does not use and that the
// update left as they were (the API server's strategy does the same).
func dropTypeDependentFields(old, svc *v1.Service) {
	if !needsNodePorts(svc) {
		held := map[int32]bool{}
		for _, p := range old.Spec.Ports {
			held[p.NodePort] = true
		}
		for i := range svc.Spec.Ports {
			if p := &svc.Spec.Ports[i]; held[p.NodePort] {
				p.NodePort = 0
			}
		}
	}
	if !needsHealthCheckNodePort(svc) && svc.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		svc.Spec.HealthCheckNodePort = 0
	}
	if !needsClusterIP(svc) && needsClusterIP(old) {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
		svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = nil, nil
	}
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		svc.Spec.AllocateLoadBalancerNodePorts = nil
		svc.Spec.LoadBalancerClass = nil
	}
	if !needsNodePorts(svc) && svc.Spec.ExternalTrafficPolicy == old.Spec.ExternalTrafficPolicy {
		svc.Spec.ExternalTrafficPolicy = ""
	}
}

// patchAllocatedValues copies into an update the allocated values it
// omits, as the API server does: cluster IPs (and the families and policy
// that go with them), node ports by port name where not used by another
// port, and the health check node port.
func patchAllocatedValues(old, svc *v1.Service) {
	if needsClusterIP(old) && needsClusterIP(svc) {
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = old.Spec.ClusterIP
		}
		if len(svc.Spec.ClusterIPs) == 0 && len(old.Spec.ClusterIPs) > 0 {
			svc.Spec.ClusterIPs = slices.Clone(old.Spec.ClusterIPs)
		}
		if len(svc.Spec.IPFamilies) == 0 {
			svc.Spec.IPFamilies = slices.Clone(old.Spec.IPFamilies)
		}
		if svc.Spec.IPFamilyPolicy == nil && old.Spec.IPFamilyPolicy != nil {
			p := *old.Spec.IPFamilyPolicy
			svc.Spec.IPFamilyPolicy = &p
		}
	}
	if needsNodePorts(old) && needsNodePorts(svc) {
		used := map[int32]bool{}
		for _, p := range svc.Spec.Ports {
			used[p.NodePort] = true
		}
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if prev := byName[p.Name]; p.NodePort == 0 && prev != 0 && !used[prev] {
				p.NodePort = prev
				used[prev] = true
			}
		}
	}
	if needsHealthCheckNodePort(old) && needsHealthCheckNodePort(svc) && svc.Spec.HealthCheckNodePort == 0 {
		svc.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

// allocateClusterIPs defaults ipFamilies and ipFamilyPolicy and fills
// clusterIPs.
func (s *apiServer) allocateClusterIPs(key string, old, svc *v1.Service) field.ErrorList {
	spec := &svc.Spec
	path := field.NewPath("spec")
	if !needsClusterIP(svc) {
		spec.ClusterIP, spec.ClusterIPs, spec.IPFamilies, spec.IPFamilyPolicy = "", nil, nil, nil
		return nil
	}
	ips := slices.Clone(spec.ClusterIPs)
	if len(ips) == 0 && spec.ClusterIP != "" {
		ips = []string{spec.ClusterIP}
	}
	if spec.ClusterIP != "" && spec.ClusterIP != ips[0] {
		return field.ErrorList{field.Invalid(path.Child("clusterIPs").Index(0), ips[0], "must match `clusterIP` when both are specified")}
	}
	if old != nil && needsClusterIP(old) && len(old.Spec.ClusterIPs) > 0 && len(ips) > 0 && ips[0] != old.Spec.ClusterIPs[0] {
		return field.ErrorList{field.Invalid(path.Child("clusterIPs").Index(0), ips[0], "field is immutable")}
	}
	headless := len(ips) > 0 && ips[0] == v1.ClusterIPNone
	if headless && len(ips) > 1 {
		return field.ErrorList{field.Invalid(path.Child("clusterIPs"), ips, "must not have more than one value when the first is 'None'")}
	}
	families := slices.Clone(spec.IPFamilies)
	var addrs []netip.Addr
	if !headless {
		for i, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return field.ErrorList{field.Invalid(path.Child("clusterIPs").Index(i), ip, "must be a valid IP address")}
			}
			fam := familyOf(a)
			switch {
			case i >= len(families):
				families = append(families, fam)
			case families[i] != fam:
				return field.ErrorList{field.Invalid(path.Child("ipFamilies").Index(i), families[i], fmt.Sprintf("does not match the family of clusterIPs[%d] %s", i, ip))}
			}
			addrs = append(addrs, a)
		}
	}
	if len(families) > 2 || (len(families) == 2 && families[0] == families[1]) {
		return field.ErrorList{field.Invalid(path.Child("ipFamilies"), families, "may have at most one family of each kind")}
	}
	for i, fam := range families {
		if _, ok := s.cidrs[fam]; !ok {
			return field.ErrorList{field.Invalid(path.Child("ipFamilies").Index(i), fam, "not configured on this cluster")}
		}
	}
	policy := spec.IPFamilyPolicy
	if policy == nil {
		p := v1.IPFamilyPolicySingleStack
		if len(families) == 2 || (headless && len(spec.Selector) == 0 && len(families) == 0) {
			p = v1.IPFamilyPolicyRequireDualStack
		}
		policy = &p
	}
	switch *policy {
	case v1.IPFamilyPolicySingleStack:
		if len(families) > 1 {
			return field.ErrorList{field.Invalid(path.Child("ipFamilyPolicy"), *policy, "must be RequireDualStack or PreferDualStack when multiple IP families are specified")}
		}
	case v1.IPFamilyPolicyRequireDualStack:
		if len(s.families) < 2 && !(headless && len(spec.Selector) == 0) {
			return field.ErrorList{field.Invalid(path.Child("ipFamilyPolicy"), *policy, "this cluster is not configured for dual-stack services")}
		}
	case v1.IPFamilyPolicyPreferDualStack:
	default:
		return field.ErrorList{field.NotSupported(path.Child("ipFamilyPolicy"), *policy, []string{string(v1.IPFamilyPolicySingleStack), string(v1.IPFamilyPolicyPreferDualStack), string(v1.IPFamilyPolicyRequireDualStack)})}
	}
	if len(families) == 0 {
		families = []v1.IPFamily{s.families[0]}
	}
	if *policy != v1.IPFamilyPolicySingleStack && len(s.families) == 2 && len(families) == 1 {
		other := s.families[0]
		if other == families[0] {
			other = s.families[1]
		}
		families = append(families, other)
	}
	spec.IPFamilies, spec.IPFamilyPolicy = families, policy
	if headless {
		spec.ClusterIP, spec.ClusterIPs = v1.ClusterIPNone, []string{v1.ClusterIPNone}
		return nil
	}
	for i, fam := range families {
		if i < len(addrs) {
			a := addrs[i]
			if !s.cidrs[fam].Contains(a) {
				return field.ErrorList{field.Invalid(path.Child("clusterIPs").Index(i), ips[i], fmt.Sprintf("failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", a, s.cidrs[fam]))}
			}
			if owner, ok := s.ips[a]; ok && owner != key {
				return field.ErrorList{field.Invalid(path.Child("clusterIPs").Index(i), ips[i], fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", a))}
			}
			continue
		}
		a, ok := s.pickIP(fam)
		if !ok {
			return field.ErrorList{field.InternalError(path.Child("clusterIPs").Index(i), fmt.Errorf("range %s is full", s.cidrs[fam]))}
		}
		ips = append(ips, a.String())
	}
	spec.ClusterIPs, spec.ClusterIP = ips, ips[0]
	return nil
}

// allocateNodePorts checks the node ports svc requests and allocates those
// it needs and lacks, and its health check node port.
func (s *apiServer) allocateNodePorts(key string, svc *v1.Service) field.ErrorList {
	spec := &svc.Spec
	path := field.NewPath("spec")
	var errs field.ErrorList
	taken := map[int32]bool{}
	check := func(p *field.Path, port int32) {
		switch owner, held := s.ports[port]; {
		case !s.portRange.Contains(int(port)):
			errs = append(errs, field.Invalid(p, port, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %s", s.portRange)))
		case held && owner != key:
			errs = append(errs, field.Invalid(p, port, "provided port is already allocated"))
		}
		taken[port] = true
	}
	for i, p := range spec.Ports {
		if p.NodePort == 0 {
			continue
		}
		if !needsNodePorts(svc) {
			errs = append(errs, field.Forbidden(path.Child("ports").Index(i).Child("nodePort"), fmt.Sprintf("may not be used when `type` is '%s'", spec.Type)))
			continue
		}
		check(path.Child("ports").Index(i).Child("nodePort"), p.NodePort)
	}
	if spec.HealthCheckNodePort != 0 {
		if !needsHealthCheckNodePort(svc) {
			errs = append(errs, field.Invalid(path.Child("healthCheckNodePort"), spec.HealthCheckNodePort, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
		} else {
			check(path.Child("healthCheckNodePort"), spec.HealthCheckNodePort)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	allocate := spec.Type == v1.ServiceTypeNodePort ||
		(spec.Type == v1.ServiceTypeLoadBalancer && (spec.AllocateLoadBalancerNodePorts == nil || *spec.AllocateLoadBalancerNodePorts))
	pick := func(p *field.Path) int32 {
		port, ok := s.pickPort(taken)
		if !ok {
			errs = append(errs, field.InternalError(p, fmt.Errorf("node port range %s is full", s.portRange)))
		}
		taken[port] = true
		return port
	}
	for i := range spec.Ports {
		if p := &spec.Ports[i]; p.NodePort == 0 && allocate {
			p.NodePort = pick(path.Child("ports").Index(i).Child("nodePort"))
		}
	}
	if spec.HealthCheckNodePort == 0 && needsHealthCheckNodePort(svc) {
		spec.HealthCheckNodePort = pick(path.Child("healthCheckNodePort"))
	}
	return errs
}

// pickPort returns the next free node port after the last one picked.
func (s *apiServer) pickPort(taken map[int32]bool) (int32, bool) {
	base, size := int32(s.portRange.Base), int32(s.portRange.Size)
	for range size {
		p := s.nextPort
		s.nextPort++
		if s.nextPort >= base+size {
			s.nextPort = base
		}
		if _, held := s.ports[p]; !held && !taken[p] {
			return p, true
		}
	}
	return 0, false
}

// pickIP returns the next free cluster IP of fam after the last one picked.
func (s *apiServer) pickIP(fam v1.IPFamily) (netip.Addr, bool) {
	cidr := s.cidrs[fam]
	start := s.nextIP[fam]
	for a := start; ; {
		next := a.Next()
		if !next.IsValid() || !cidr.Contains(next) || isBroadcast(cidr, next) {
			next = cidr.Addr().Next().Next()
		}
		if _, held := s.ips[a]; !held {
			s.nextIP[fam] = next
			return a, true
		}
		a = next
		if a == start {
			return netip.Addr{}, false
		}
	}
}

// isBroadcast reports whether a is the last address of an IPv4 cidr.
func isBroadcast(cidr netip.Prefix, a netip.Addr) bool {
	return a.Is4() && !cidr.Contains(a.Next())
}

func familyOf(a netip.Addr) v1.IPFamily {
	if a.Is4() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}
