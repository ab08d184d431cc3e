package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/lb"
)

// AnnotationHealthCheckProtocol selects how the local cloud checks the
// nodes behind a Service's load balancer.
const AnnotationHealthCheckProtocol = "localcloud.ccmkit.io/health-check-protocol"

// Annotations are the example provider's own Service annotations, beside
// ccmkit's (lb.Annotations). ANNOTATIONS.md is their reference, generated
// from this declaration (annotations_test.go keeps it current).
var Annotations = lb.MustSchema(lb.Annotation{
	Name:    AnnotationHealthCheckProtocol,
	Type:    lb.Enum(cloud.HealthHTTP, cloud.HealthTCP),
	Default: cloud.HealthHTTP,
	Doc:     "How the load balancer checks each node: http (GET the health-check node port's /healthz: kube-proxy's, or the Service's healthCheckNodePort for externalTrafficPolicy Local) or tcp (connect to the node port).",
})

// Tags the load-balancer backend stores on each cloud load balancer.
const (
	TagOwner      = "ccmkit.io/owner"       // lb.Key.String(): the ownership key
	TagCluster    = "ccmkit.io/cluster"     // the cluster name, to list a cluster's
	TagService    = "ccmkit.io/service"     // namespace/name
	TagServiceUID = "ccmkit.io/service-uid" // the Service UID
)

// LoadBalancers is the lb block's backend over the local cloud: an
// lb.Backend, lb.TargetUpdater and lb.Lister. The ownership key, the
// Service and the options are stored as tags and options, so the cloud
// reports the spec back exactly. Its load balancers proxy connections, so
// their ingress has ipMode Proxy. It is safe for concurrent use.
type LoadBalancers struct{ Client *cloud.Client }

var (
	_ lb.Backend       = (*LoadBalancers)(nil)
	_ lb.TargetUpdater = (*LoadBalancers)(nil)
	_ lb.Lister        = (*LoadBalancers)(nil)
)

// Find returns the load balancer tagged with key.
func (b *LoadBalancers) Find(ctx context.Context, key lb.Key) (*lb.LoadBalancer, error) {
	list, err := b.Client.ListLoadBalancers(ctx, map[string]string{TagOwner: key.String()})
	if err != nil {
		return nil, classify(err)
	}
	switch len(list) {
	case 0:
		return nil, cloudcall.NotFoundf("no load balancer owned by %s", key)
	case 1:
		return toLB(list[0]), nil
	}
	return nil, cloudcall.Permanent(fmt.Errorf("%d load balancers are owned by %s", len(list), key))
}

// Create creates the load balancer; a name in use is an *lb.ExistsError
// holding the existing one.
func (b *LoadBalancers) Create(ctx context.Context, spec *lb.Spec) (*lb.LoadBalancer, error) {
	got, err := b.Client.CreateLoadBalancer(ctx, fromSpec(spec))
	var ae *cloud.APIError
	if errors.As(err, &ae) && ae.Code == cloud.CodeNameInUse && ae.LoadBalancer != nil {
		return nil, &lb.ExistsError{LoadBalancer: toLB(ae.LoadBalancer)}
	}
	if err != nil {
		return nil, classify(err)
	}
	return toLB(got), nil
}

// Update replaces the configuration of cur with spec.
func (b *LoadBalancers) Update(ctx context.Context, cur *lb.LoadBalancer, spec *lb.Spec) (*lb.LoadBalancer, error) {
	next := fromSpec(spec)
	next.Name = cur.Spec.Name // fixed at creation
	got, err := b.Client.UpdateLoadBalancer(ctx, cur.ID, next)
	if err != nil {
		return nil, classify(err)
	}
	return toLB(got), nil
}

// UpdateTargets replaces the targets of cur.
func (b *LoadBalancers) UpdateTargets(ctx context.Context, cur *lb.LoadBalancer, targets []lb.Target) (*lb.LoadBalancer, error) {
	got, err := b.Client.SetTargets(ctx, cur.ID, fromTargets(targets))
	if err != nil {
		return nil, classify(err)
	}
	return toLB(got), nil
}

// Delete deletes cur; one already gone is not an error.
func (b *LoadBalancers) Delete(ctx context.Context, cur *lb.LoadBalancer) error {
	err := b.Client.DeleteLoadBalancer(ctx, cur.ID)
	if cloud.IsNotFound(err) {
		return nil
	}
	return classify(err)
}

// List returns the load balancers cluster owns (the cloud's list reads its
// own writes).
func (b *LoadBalancers) List(ctx context.Context, cluster string) ([]*lb.LoadBalancer, error) {
	list, err := b.Client.ListLoadBalancers(ctx, map[string]string{TagCluster: cluster})
	if err != nil {
		return nil, classify(err)
	}
	out := make([]*lb.LoadBalancer, 0, len(list))
	for _, l := range list {
		if got := toLB(l); got.Spec.Key.Cluster == cluster {
			out = append(out, got)
		}
	}
	return out, nil
}

// fromSpec is the cloud configuration of spec.
func fromSpec(spec *lb.Spec) *cloud.LoadBalancer {
	out := &cloud.LoadBalancer{
		Name: spec.Name,
		Tags: map[string]string{
			TagOwner:      spec.Key.String(),
			TagCluster:    spec.Key.Cluster,
			TagService:    spec.Service.String(),
			TagServiceUID: string(spec.Service.UID),
		},
		Targets: fromTargets(spec.Targets),
		HealthCheck: cloud.HealthCheck{
			Protocol: spec.Options[AnnotationHealthCheckProtocol],
			Port:     spec.HealthCheck.Port,
			Path:     spec.HealthCheck.Path,
		},
		SessionAffinity:        string(spec.SessionAffinity),
		AffinityTimeoutSeconds: spec.AffinityTimeoutSeconds,
		Options:                spec.Options,
	}
	for _, li := range spec.Listeners {
		out.Listeners = append(out.Listeners, cloud.Listener{Name: li.Name, Protocol: string(li.Protocol), Port: li.Port, NodePort: li.NodePort, AppProtocol: li.AppProtocol})
	}
	for _, r := range spec.SourceRanges {
		out.SourceRanges = append(out.SourceRanges, r.String())
	}
	for _, f := range spec.IPFamilies {
		out.IPFamilies = append(out.IPFamilies, string(f))
	}
	for _, a := range spec.Addresses {
		out.RequestedAddresses = append(out.RequestedAddresses, a.String())
	}
	return out
}

func fromTargets(targets []lb.Target) []cloud.Target {
	out := make([]cloud.Target, 0, len(targets))
	for _, t := range targets {
		ct := cloud.Target{ID: t.ProviderID, Name: t.NodeName}
		for _, a := range t.Addresses {
			ct.Addresses = append(ct.Addresses, a.String())
		}
		out = append(out, ct)
	}
	return out
}

// toLB is the lb block's view of a cloud load balancer. Values the cloud
// checked on the way in parse; anything else is left out.
func toLB(l *cloud.LoadBalancer) *lb.LoadBalancer {
	key, _ := lb.ParseKey(l.Tags[TagOwner]) // no key: not a ccmkit load balancer
	ns, name, _ := strings.Cut(l.Tags[TagService], "/")
	out := &lb.LoadBalancer{
		ID: l.ID,
		Spec: lb.Spec{
			Name:                   l.Name,
			Key:                    key,
			Service:                lb.ServiceRef{Namespace: ns, Name: name, UID: types.UID(l.Tags[TagServiceUID])},
			HealthCheck:            lb.HealthCheck{Port: l.HealthCheck.Port, Path: l.HealthCheck.Path},
			SessionAffinity:        v1.ServiceAffinity(l.SessionAffinity),
			AffinityTimeoutSeconds: l.AffinityTimeoutSeconds,
			Options:                l.Options,
		},
		Message: l.Message,
	}
	for _, li := range l.Listeners {
		out.Spec.Listeners = append(out.Spec.Listeners, lb.Listener{Name: li.Name, Protocol: v1.Protocol(li.Protocol), Port: li.Port, NodePort: li.NodePort, AppProtocol: li.AppProtocol})
	}
	for _, t := range l.Targets {
		lt := lb.Target{ProviderID: t.ID, NodeName: t.Name}
		for _, a := range t.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				lt.Addresses = append(lt.Addresses, ip)
			}
		}
		out.Spec.Targets = append(out.Spec.Targets, lt)
	}
	for _, r := range l.SourceRanges {
		if p, err := netip.ParsePrefix(r); err == nil {
			out.Spec.SourceRanges = append(out.Spec.SourceRanges, p)
		}
	}
	for _, f := range l.IPFamilies {
		out.Spec.IPFamilies = append(out.Spec.IPFamilies, v1.IPFamily(f))
	}
	for _, a := range l.RequestedAddresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			out.Spec.Addresses = append(out.Spec.Addresses, ip)
		}
	}
	for _, a := range l.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			out.Ingress = append(out.Ingress, lb.Ingress{IP: ip, IPMode: v1.LoadBalancerIPModeProxy})
		}
	}
	switch l.Status {
	case cloud.LBActive:
		out.Status = lb.StatusActive
	case cloud.LBDeleting:
		out.Status = lb.StatusDeleting
	case cloud.LBFailed:
		out.Status = lb.StatusFailed
	default:
		out.Status = lb.StatusPending
	}
	return out
}
