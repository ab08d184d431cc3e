// Package harness runs the real upstream cloud controllers (cloud-node,
// cloud-node-lifecycle, service-lb, node-route, from k8s.io/cloud-provider)
// and ccmkit's own (node IPAM, and a provider's) against a provider, from
// the same controller table and flags as the command
// (framework.Controllers, framework.ParseConfig), so a provider is tested
// the way its cloud-controller-manager runs it.
//
// # Simulated time
//
// With the default client, tests run inside testing/synctest bubbles: the
// upstream controllers' queues and timers use the real clock and take no
// injected one, and a bubble makes that clock simulated, so 30 minutes of
// controller time pass in about a second, with no sleeps. Install the
// bubble-safe error backoff from TestMain ([Main] or
// [InstallErrorBackoff]); [Start] fails the test otherwise. Given a
// kubeconfig, the same harness drives a real API server, in real time.
//
// # An API server, emulated
//
// [NewFakeClientset] (the default client) is client-go's fake clientset
// with what controllers rely on from an API server: UIDs,
// creationTimestamp, generation and per-resource resourceVersions on create
// (consistent with list and watch); Conflict for an update or patch
// carrying a stale resourceVersion; unchanged writes not stored; spec and
// status written separately for Services and Nodes (use UpdateStatus for
// Node conditions); graceful deletion with finalizers (deletionTimestamp
// set, object deleted by the update or patch that removes the last
// finalizer, including the status-subresource patch through which the
// service controller removes its own; new finalizers refused while
// deleting); and Service defaulting and allocation as kube-apiserver does it
// (IP families and policy from [FakeOptions].IPFamilies, cluster IPs,
// unique node ports, health-check node ports for externalTrafficPolicy:
// Local, released on type change or deletion; protocol TCP; ipMode VIP).
// Its limits: the Delete event carries the last stored state; no
// validation beyond those checks, no admission, no garbage collector;
// server-side apply and writes through Tracker() bypass it. Event names
// are made unique, since inside a bubble two Events about one object get
// the same timestamp-derived name. None of it applies to a real API server.
//
// # Lifecycle and helpers
//
// [Start] parses [Options].Flags, initializes the provider as the manager
// does (Initialize, then SetInformers), sets up each listed controller,
// starts and syncs the informers, runs the controllers and registers
// [Harness.Stop] with t.Cleanup; Stop waits for every controller it started
// (every controller is stopped before the test, or its bubble, ends, on
// failure paths too), then for the error handlers' rate limit, so that an
// upstream worker that outlives its controller's Run is not left asleep
// when the bubble's clock stops. The Wait helpers poll a condition until it holds or a
// timeout passes; they never sleep for a fixed time.
//
// When the lifecycle controller deletes a Node: only while the Node is
// NotReady (Ready False or Unknown, or no Ready condition at all), once
// InstanceExists reports the instance gone. Through ccmkit's instance cache
// that is after the cached entry expires (CacheOptions.TTL, 1 minute by
// default) plus one monitor period (--node-monitor-period, 5 s). A stopped
// instance of a NotReady Node gets the shutdown taint
// (node.cloudprovider.kubernetes.io/shutdown) instead. [HasTaint] takes
// such keys; cloudproviderapi names them (TaintExternalCloudProvider,
// TaintNodeShutdown).
//
// Limits: the emulation is not an API server (no validation beyond what is
// listed, no admission, no field selectors on the fake's lists); watch
// buffers are client-go's (100 events), so create thousands of objects in
// batches.
package harness
