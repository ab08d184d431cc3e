package lb_test

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cloud-provider/api"

	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// A Reconciler over a cloud that provisions asynchronously: the first
// Ensure creates the load balancer and asks to be called again (the service
// controller does so after RetryAfter), the next one returns its address.
func ExampleReconciler() {
	cloud := fakecloud.New(fakecloud.Options{LBProvisionPolls: 1})
	r, err := lb.NewReconciler(cloud.LoadBalancers(), lb.Options{})
	if err != nil {
		panic(err)
	}
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "5b2c1f04-7d8e-4a0b-9c61-2f3e4d5a6b7c"},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeLoadBalancer,
			Ports: []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080}},
		},
	}
	ctx := context.Background()
	for {
		st, err := r.EnsureLoadBalancer(ctx, "prod", svc, nil)
		var retry *api.RetryError
		if errors.As(err, &retry) {
			fmt.Println("pending, again in", retry.RetryAfter())
			continue
		}
		if err != nil {
			panic(err)
		}
		fmt.Println(r.GetLoadBalancerName(ctx, "prod", svc), st.Ingress[0].IP, *st.Ingress[0].IPMode)
		break
	}
	// Output:
	// pending, again in 5s
	// pending, again in 5s
	// ccmkit-5b2c1f047d8e4a0b9c612f3e4d5a6b7c 203.0.113.1 VIP
}

// A provider declares its annotations once; bad values are errors that
// name the annotation and what it allows.
func ExampleSchema() {
	schema := lb.MustSchema(lb.Annotation{
		Name: "example.com/load-balancer-size", Type: lb.Enum("small", "large"),
		Default: "small", CreateOnly: true, Doc: "Size of the load balancer.",
	})
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"example.com/load-balancer-size": "huge"}}}
	_, err := schema.Parse(svc)
	fmt.Println(err)
	// Output:
	// annotation example.com/load-balancer-size="huge" is invalid ("huge" is not allowed): want one of "small", "large"
}
