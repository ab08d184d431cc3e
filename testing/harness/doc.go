// Package harness runs the real upstream cloud controllers
// (k8s.io/cloud-provider/controllers/node and .../nodelifecycle) and ccmkit's
// own controllers against a provider, so a provider is tested the way a
// cloud-controller-manager runs it.
//
// With client-go's fake clientset (the default) tests run inside
// testing/synctest bubbles: the upstream controllers' queues and timers use
// the real clock and take no injected one, and a bubble makes that clock
// simulated, so 30 minutes of controller time pass in about a second, with
// no sleeps. Given a kubeconfig, the same harness drives a real API server
// (end-to-end tests), in real time.
//
// [Start] starts the controllers and registers their shutdown with t.Cleanup
// (every controller is stopped before the test, or its bubble, ends, on
// failure paths too). The Wait helpers poll a condition until it holds or a
// timeout passes; they never sleep for a fixed time.
//
// Limits: the service and route controllers are not started yet (they land
// with the lb and routes blocks); client-go's fake clientset ignores
// finalizers and deletes at once.
package harness
