// Package provider is ccmkit's example provider: the backends of the
// instances, load-balancer and routes blocks over the local cloud's SDK
// (package github.com/ccmkit/ccmkit/examples/localcloud/cloud), composed
// with framework.Builder. Its command, cmd/localcloud-ccm, is a few lines
// around [New].
//
// What a provider author writes, and where it is here:
//
//   - the --cloud-config file and its parser ([Config], [ParseConfig],
//     fuzzed): endpoint and token, checked against the cloud before leader
//     election ([New]);
//   - the error mapping of the SDK to cloudcall's classes (classify.go):
//     404 not found, 429 or Retry-After throttled, 5xx and transport errors
//     transient, other 4xx permanent;
//   - [Instances]: lookup by ID or node name, and a list of all, so the
//     instance cache refreshes every Node from one call;
//   - [LoadBalancers]: find by ownership key (a tag), create idempotent on
//     the name (the cloud's 409 becomes an *lb.ExistsError), update, target
//     updates, delete, list by cluster; the spec is stored as tags and
//     options so the cloud reports it back exactly, and the ingress has
//     ipMode Proxy because the cloud's load balancers proxy connections;
//   - [Routes]: the route table, tagged with the cluster name, storing the
//     Node addresses each route was made from; a full table is
//     routes.TableFull;
//   - [Annotations]: the provider's own Service annotation (the health-check
//     protocol), declared once, parsed and checked by the lb block.
//
// Load-balancer addresses come from an ipam.LBAllocator pool (the cloud's
// range by default), so the lb block allocates each address before the
// cloud creates the load balancer and rebuilds the pool from the Services
// and the cloud's load balancers after a restart: no address is handed out
// twice. Pod CIDRs come from ccmkit's node IPAM controller
// (--allocate-node-cidrs --cluster-cidr); routes from ccmkit's route
// controller.
//
// The backends pass testing/conformance's RunInstances, RunLoadBalancers,
// RunRoutes and the provider passes RunProvider, against the local cloud
// served in-process (provider_test.go).
package provider
