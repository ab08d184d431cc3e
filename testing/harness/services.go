package harness

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"
)

// NewLoadBalancerService returns a Service of type LoadBalancer in
// namespace "default" with one TCP port per given port (node ports are
// allocated by the fake clientset's defaulting or the API server).
func NewLoadBalancerService(name string, ports ...int32) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name}},
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, Protocol: v1.ProtocolTCP})
	}
	return svc
}

// CreateService creates svc, failing the test on error, and returns it as
// stored (defaulted).
func (h *Harness) CreateService(t testing.TB, svc *v1.Service) *v1.Service {
	t.Helper()
	out, err := h.Client.CoreV1().Services(svc.Namespace).Create(h.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	return out
}

// Service returns the Service, failing the test if it cannot be read.
func (h *Harness) Service(t testing.TB, namespace, name string) *v1.Service {
	t.Helper()
	svc, err := h.Client.CoreV1().Services(namespace).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting service %s/%s: %v", namespace, name, err)
	}
	return svc
}

// WaitForIngress waits until the Service's status lists at least one
// load-balancer ingress, and returns the Service.
func (h *Harness) WaitForIngress(t testing.TB, namespace, name string) *v1.Service {
	t.Helper()
	return h.WaitForService(t, namespace, name, "load-balancer ingress", func(s *v1.Service) bool {
		return len(s.Status.LoadBalancer.Ingress) > 0
	})
}

// WaitForService waits until the Service exists and cond holds.
func (h *Harness) WaitForService(t testing.TB, namespace, name, what string, cond func(*v1.Service) bool) *v1.Service {
	t.Helper()
	get := func(ctx context.Context) (*v1.Service, error) {
		return h.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	return waitForObject(t, h, fmt.Sprintf("service %s/%s: %s", namespace, name, what), get, cond)
}

// DeleteService deletes the Service as a user does and waits until it is
// gone: with finalizers (the service controller's
// service.kubernetes.io/load-balancer-cleanup) the API server (or the fake
// clientset's emulation) only marks it deleted, and the Service disappears
// once the controller has deleted the load balancer and removed its
// finalizer.
func (h *Harness) DeleteService(t testing.TB, namespace, name string) {
	t.Helper()
	err := h.Client.CoreV1().Services(namespace).Delete(h.ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("deleting service %s/%s: %v", namespace, name, err)
	}
	h.WaitFor(t, fmt.Sprintf("service %s/%s gone", namespace, name), func(ctx context.Context) (bool, error) {
		_, err := h.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// StatusPatches counts the updates and patches of the Service's status
// subresource the controllers have made (the service controller patches
// status when the ingress list changes), for tests of no-op syncs. It
// needs the fake clientset: with a real API server it fails the test.
func (h *Harness) StatusPatches(t testing.TB, namespace, name string) int {
	t.Helper()
	f, ok := h.Client.(interface{ Actions() []k8stesting.Action })
	if !ok {
		t.Fatalf("StatusPatches needs a fake clientset, not %T", h.Client)
	}
	n := 0
	for _, a := range f.Actions() {
		if a.GetResource().Resource != "services" || a.GetSubresource() != "status" || a.GetNamespace() != namespace {
			continue
		}
		switch a := a.(type) {
		case k8stesting.PatchAction:
			if a.GetName() == name {
				n++
			}
		case k8stesting.UpdateAction:
			if obj, ok := a.GetObject().(metav1.Object); ok && obj.GetName() == name {
				n++
			}
		}
	}
	return n
}
