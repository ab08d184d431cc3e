package harness_test

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	servicehelper "k8s.io/cloud-provider/service/helpers"

	"github.com/ccmkit/ccmkit/testing/harness"
)

// A dual-stack cluster's fake API server defaults and allocates a
// LoadBalancer Service as kube-apiserver does, and keeps it, once deleted,
// until the service controller's status patch removes its finalizer.
func ExampleNewFakeClientset() {
	ctx := context.Background()
	client := harness.NewFakeClientset(harness.FakeOptions{IPFamilies: []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}})
	services := client.CoreV1().Services("default")

	policy := v1.IPFamilyPolicyPreferDualStack
	svc, err := services.Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Finalizers: []string{servicehelper.LoadBalancerCleanupFinalizer}},
		Spec: v1.ServiceSpec{
			Type:                  v1.ServiceTypeLoadBalancer,
			IPFamilyPolicy:        &policy,
			ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal,
			Ports:                 []v1.ServicePort{{Name: "http", Port: 80}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("uid:", svc.UID)
	fmt.Println("clusterIPs:", svc.Spec.ClusterIPs, svc.Spec.IPFamilies)
	fmt.Println("nodePort:", svc.Spec.Ports[0].NodePort, svc.Spec.Ports[0].Protocol, "healthCheckNodePort:", svc.Spec.HealthCheckNodePort)

	if err := services.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		panic(err)
	}
	deleting, _ := services.Get(ctx, "web", metav1.GetOptions{})
	fmt.Println("being deleted:", deleting.DeletionTimestamp != nil)

	done := deleting.DeepCopy()
	done.Finalizers = nil
	if _, err := servicehelper.PatchService(client.CoreV1(), deleting, done); err != nil {
		panic(err)
	}
	_, err = services.Get(ctx, "web", metav1.GetOptions{})
	fmt.Println("after the finalizer's removal:", err)
	// Output:
	// uid: 00000000-0000-4000-8000-000000000001
	// clusterIPs: [10.96.0.2 fd00:10:96::2] [IPv4 IPv6]
	// nodePort: 30000 TCP healthCheckNodePort: 30001
	// being deleted: true
	// after the finalizer's removal: services "web" not found
}
