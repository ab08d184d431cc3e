// Package stack runs the example provider end to end, for the e2e tests
// and the demo: it builds the localcloud and localcloud-ccm binaries
// ([Build]), starts the local cloud ([StartCloud]) and the CCM as its own
// ServiceAccount identity ([StartCCM], with the deploy manifest's
// command, RBAC applied with [ApplyRBAC], the Deployment itself with
// [ApplyDeployment]) against a control plane from package ctrlplane,
// and plays each Node's kubelet and kube-proxy ([StartFakeNode],
// [RegisterNode]): a TCP server on the node ports and /healthz on 10256 on
// the Node's loopback address, the Node created with the uninitialized taint
// and set Ready through the status subresource, as the kubelet's identity.
//
// Processes are real, so waits are real: [Poll] is the one place that
// waits, with a deadline, never a fixed sleep.
package stack
