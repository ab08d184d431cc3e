// Package routes is ccmkit's routes block: cluster networking through the
// cloud's route table (one route per Node pod CIDR, to that Node). The
// provider author writes a small [Backend] (list, create, delete the
// cluster's routes; optionally [Applier] for clouds that write the table in
// batches); the block turns it into a correct, quiet, batching route
// manager.
//
// # Pieces
//
//   - [Desired] and [Diff]: the pure core. Desired turns Nodes into the
//     routes they need (both families of a dual-stack Node under one name
//     hint; bad CIDRs are errors, never panics); Diff compares them with the
//     listed routes in O(n) and returns a [Plan]: blackholes, routes without
//     a target, stale and duplicate routes deleted, missing routes created,
//     routes whose Node addresses (or next hop) changed replaced. It touches
//     only routes inside the cluster CIDRs ([InCluster], upstream's rule)
//     and, since a Backend lists only this cluster's routes, never a foreign
//     one.
//   - [Adapter]: a cloudprovider.Routes for k8s.io/cloud-provider's route
//     controller. With an Applier, a [Batcher] coalesces upstream's up to
//     200 concurrent calls into batch writes, each caller getting its own
//     result. It knows when the table is full and stops sending creates.
//   - [Controller]: ccmkit's route controller. It applies Diff's plan in as
//     few writes as the backend allows (5,000 routes from empty: 5 writes of
//     1,000, where upstream's makes 5,000 calls, or 25 batches through the
//     Batcher), sets NetworkUnavailable as upstream does, reacts to Node
//     events and a period, and is quiet in steady state: one list call per
//     reconcile, no API write, no log line at default verbosity. A full
//     table gives one Warning Event naming the limit ([EventRouteTableFull])
//     instead of one per route per pass.
//
// framework.Builder.WithRoutes wires it all: ccmkit's Controller under
// upstream's name node-route-controller by default, or upstream's route
// controller over the Adapter with [Options].UpstreamController.
//
// # Writing a Backend
//
// Ownership is the backend's: List returns the routes this cluster made,
// recognised by a tag holding the cluster name or by the name prefix
// [NamePrefix] of the names [Name] gives; foreign routes are never
// returned. Where the cloud can store a route's Node addresses (tags, a
// description), store the ones Create receives and list them back with
// AddressesStored: an address change then replaces the route. Where it
// cannot, list the next hop the cloud reports; Diff compares it with the
// Node's ([NextHop]). Classify errors with cloudcall; report a full table
// with [TableFull]. testing/conformance's RunRoutes checks all of it.
//
// # Dropping down a level
//
// Diff and Desired work alone (a provider's own reconciler, a dry-run
// tool); the Batcher works over any Applier; the Adapter serves any
// controller that speaks cloudprovider.Routes.
package routes
