// Package ipam allocates IP space for a cloud provider: pod CIDRs for nodes
// and LoadBalancer addresses for Services, IPv4 and IPv6, over [net/netip].
// It holds allocators, pools and parsers only, and imports no client-go:
// the node IPAM controller, which assigns spec.podCIDRs to Nodes with a
// CIDRSet per family, is package [github.com/ccmkit/ccmkit/ipam/nodeipam].
//
// # Levels
//
// The package has two levels; use the lowest one that does the job.
//
//   - [CIDRSet] hands out equal-size subnets of a cluster prefix (the pod
//     CIDRs of nodes): AllocateNext, Occupy, Release. [AddrSet] does the same
//     for single addresses from a list of ranges.
//   - [LBAllocator] assigns LoadBalancer addresses to Services from [Pool]s
//     restricted by namespace or label selector, with requested addresses,
//     sharing by key with disjoint ports and dual-stack families. It holds an
//     [AddrSet] per pool and family and adds the rules about Services.
//
// To drop down a level, build the lower type yourself: an LBAllocator is a
// list of AddrSets plus the record of which Service holds which address, so
// a provider with its own rules can use AddrSet directly, and a controller
// with its own node handling can use CIDRSet. Parsers ([ParseCIDR],
// [ParseCIDRs], [ParseRange], [ParseRanges]) turn flag and configuration
// strings into the values these types take; they reject bad input with
// errors wrapping [ErrInvalid] and never guess.
//
// # Guarantees
//
// Allocation is deterministic: the lowest free subnet or address first. It
// does not slow down as a set fills: sets are 64-ary bitmaps with summary
// bits, so finding a free item costs O(log64 n) (two or three words for a
// /8 cut into /24s) instead of a scan, and a successful AllocateNext does not
// allocate on the heap in steady state. Bitmap nodes are allocated lazily, so
// a /32 IPv6 cluster cut into /64s costs memory only for what is used. A set
// holds at most [MaxSetSize] (2^48) items.
//
// Restart safety: an LBAllocator refuses to allocate ([ErrNotReady]) until
// [LBAllocator.Restore] has recorded every address already in use (Service
// status, requested addresses, the cloud's load balancers), so the same
// address never goes to two Services after a restart. It never lets two
// Services hold one address unless both have the same sharing key and
// disjoint ports.
//
// # Errors
//
// Every error wraps one sentinel ([ErrInvalid], [ErrOutOfRange], [ErrFull],
// [ErrExhausted], [ErrNoPool], [ErrNotEligible], [ErrConflict],
// [ErrNotReady]); check it with [errors.Is]. A conflict is a
// [*ConflictError] that names the Service holding the address ([errors.As]).
// Each method documents the errors it returns.
//
// # Concurrency
//
// Every type is safe for concurrent use: each set and allocator has its own
// mutex, held only in memory (never across a network call). There is no
// package-level mutable state.
package ipam
