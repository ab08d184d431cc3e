// Package lb is ccmkit's load-balancer block: it turns a small Backend that
// a provider author writes over the cloud's load-balancer API into a
// retrying, rate-limited, crash-safe cloudprovider.LoadBalancer, the
// Reconciler, plus an orphan Reaper.
//
// # What the author writes
//
// A Backend has four calls: Find (by ownership key), Create (idempotent on
// the load balancer's name), Update and Delete. Optional capabilities are
// found by type assertion: TargetUpdater (a cheap call that replaces only
// the nodes, used on every Node set change), Lister (every load balancer a
// cluster owns: needed by the Reaper and by address pools) and LegacyFinder
// (a load balancer made by the provider's previous CCM, adopted once instead
// of creating a second one). Errors are classified with cloudcall; every call
// goes through the provider's cloudcall.Budget as block "lb" (metrics
// ccmkit_cloud_calls_total{block="lb",op=...}).
//
// Provider options come from Service annotations declared once in a Schema
// (name, Type, default, create-only or mutable, doc); ccmkit's own are in
// Annotations (source ranges, requested addresses, pool). Schema.Markdown
// renders the reference; this package's ANNOTATIONS.md is generated from
// Annotations by go generate and kept current by a golden test.
//
// # What the Reconciler guarantees
//
//   - One load balancer per Service. The name (Name, from the Service UID
//     only) and the ownership key (Key: cluster name and Service UID) are
//     frozen formats. Lookup is by key; creation is idempotent on the name,
//     so a crash between the cloud's create and the status write, or reads
//     that lag writes, end in adoption of the existing load balancer after
//     its key is checked: another cluster's is refused with an Event
//     (ClusterNameChanged when only --cluster-name differs).
//   - No worker blocks on the cloud: a load balancer still provisioning is
//     an api.RetryError with Options.PollInterval, and a throttled call a
//     RetryError after its Retry-After; the service controller polls instead
//     of backing off. Other errors stay plain, so its 5 s to 300 s backoff
//     applies.
//   - No write when nothing changed: an observed load balancer equal to the
//     desired Spec costs one Find; UpdateLoadBalancer writes only a changed
//     target set. Ingress carries the backend's ipMode (VIP when unset) in
//     spec.ipFamilies order, so an unchanged load balancer causes no status
//     patch.
//   - Bad input never reaches the cloud: a bad annotation or Service spec is
//     a Warning Event (InvalidAnnotation, InvalidLoadBalancer) and an error
//     before any cloud call; a create-only option changed after creation is
//     an error naming it. Get and Delete ignore annotations, so deletion is
//     never blocked by them.
//   - Nothing is deleted that this cluster does not own, and GetLoadBalancer
//     and EnsureLoadBalancerDeleted report the load balancer gone only when
//     the backend says so and no recent write (Options.ReadLag) could be
//     hidden by lagging reads: this Reconciler's, or, within ReadLag of its
//     start, a previous manager's whose answer a crash lost. Within ReadLag
//     of its own write, Ensure and Update compare with what that write left,
//     not with a read that may predate it.
//   - Operations on one Service are serialized (upstream runs
//     UpdateLoadBalancer from its node worker concurrently with its service
//     worker). cloudprovider.ImplementedElsewhere is returned unwrapped from
//     Ensure, Update and EnsureLoadBalancerDeleted, never from Get.
//
// # Address pools
//
// For clouds whose load-balancer addresses the provider picks,
// Options.Pools (an ipam.LBAllocator) allocates an address before the
// cloud's create and passes it in Spec.Addresses, so the cloud holds it
// durably. The pools are restored once, after the Service informer synced,
// from every LoadBalancer Service and the backend's Lister (until then
// Ensure is a RetryError); addresses are released once the cloud no longer
// shows the load balancer. An address is never handed out twice, across
// restarts included.
//
// # Orphans
//
// The service controller never re-runs Ensure on a timer and skips Services
// deleted while no manager ran without a finalizer: Reaper deletes the load
// balancers this cluster owns whose Service UID is gone, after a grace
// period that starts once the Service informer has synced, with a dry-run
// mode, Events and metrics. It refuses upstream's default cluster name
// "kubernetes". The framework runs it as the controller
// load-balancer-reaper, disabled by default.
//
// # Metrics
//
// ccmkit_lb_pending, ccmkit_lb_writes_total{kind}, ccmkit_lb_pool_addresses
// {pool,family,state}, ccmkit_lb_orphans and ccmkit_lb_orphans_reaped_total
// {result}, through Reconciler.Collectors; per-call latency and results
// through the cloudcall Budget.
//
// # Dropping down a level
//
// The Reconciler is a cloudprovider.LoadBalancer: use it without the
// framework by passing it to your own cloudprovider.Interface. Spec and
// LoadBalancer are plain data, so a backend can be tested alone with
// testing/conformance.RunLoadBalancers.
//
// # Concurrency
//
// Reconciler and Reaper are safe for concurrent use; Schema is immutable;
// Spec, LoadBalancer and Key are values. No lock is held across a cloud
// call except the per-Service one.
package lb
