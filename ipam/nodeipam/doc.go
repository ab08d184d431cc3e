// Package nodeipam is ccmkit's node IPAM controller: it assigns
// spec.podCIDRs to Nodes, as kube-controller-manager's
// node-ipam-controller does (upstream's cannot be imported from
// k8s.io/kubernetes), with its flags, its Events and its bookkeeping.
//
// # Levels
//
//   - [Controller] ([New], [Controller.Run]) watches Nodes and writes their
//     pod CIDRs. In range mode ([RangeAllocator]) they are the lowest free
//     subnets of the cluster CIDRs; dual-stack Nodes get both families or
//     none. In cloud mode ([CloudAllocator], [Options].CloudCIDRs, usually
//     [InstanceCIDRs] over the instances block's cache) they are the CIDRs
//     the cloud reports for the Node's instance. It occupies the pod CIDRs
//     of every existing Node before it allocates anything, never changes a
//     Node that has pod CIDRs, releases them when the Node is deleted, and
//     reports what it cannot do with Warning Events on the Node
//     ([ReasonCIDRNotAvailable], [ReasonCIDRAssignmentFailed],
//     [ReasonPodCIDRConflict], [ReasonInvalidPodCIDR],
//     [ReasonPodCIDRFamilyMissing]), once per occurrence.
//   - [Ledger] is the bookkeeping alone, with no API client: which Node
//     holds which subnet, reservations, overlaps and their heirs, Nodes
//     waiting for space. Use it to build a controller with other rules.
//   - [ipam.CIDRSet] is the allocator underneath.
//
// # Flags
//
// [Flags] holds kube-controller-manager's --node-cidr-mask-size,
// --node-cidr-mask-size-ipv4, --node-cidr-mask-size-ipv6 and
// --service-cluster-ip-range ([Flags.AddFlags]). [Flags.Options] checks them
// with upstream's --allocate-node-cidrs, --cluster-cidr and
// --cidr-allocator-type ([UpstreamFlags]) and returns the [Options]: it is
// pure, so a command calls it before leader election and every replica
// refuses a bad flag at start, not only the elected one. With
// --allocate-node-cidrs=false it reports enabled=false: the controller is
// not started. CloudAllocator does not need --cluster-cidr (when set, it
// bounds and orders the cloud's CIDRs); RangeAllocator does.
//
// # Retries
//
// A Node is retried through its workqueue's rate limiter
// ([Options].RateLimiter, by default 5 ms doubling up to
// [DefaultMaxRetryDelay], then every DefaultMaxRetryDelay): after a failed
// write or cloud lookup, while a cluster CIDR is exhausted (and at once
// when a Node deletion frees a subnet), and while the cloud reports no pod
// CIDRs for it (and at once when its providerID changes). While it is
// retried, Node updates that change nothing the controller reads do not
// sync it again, and an Event identical to the last one is not repeated.
//
// # Errors
//
// Errors wrap the sentinels of package ipam: [ipam.ErrInvalid] for bad
// options and flags (every problem is reported at once), [ipam.ErrFull]
// for an exhausted cluster CIDR ([*ExhaustedError]). A running Controller
// reports through Events and logs (klog.FromContext); Run returns an error
// only when it cannot run.
//
// # Concurrency
//
// [Controller] and [Ledger] are safe for concurrent use; their mutexes are
// never held across an API or cloud call. The controller's workers sync
// different Nodes in parallel (client-go's workqueue never hands one Node
// to two workers). Run must be called once; it blocks until its context
// ends and returns after every goroutine it started has stopped. [Flags] is
// plain data, not safe for concurrent mutation.
//
// The package never imports ccmkit's framework: the framework wraps
// Controller.Run as one of its controllers (framework.NodeIPAMController).
package nodeipam
