package ctrlplane_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/ctrlplane"
)

// A demo command starts the control plane, writes a kubeconfig for a
// cloud-controller-manager identity that RBAC applies to, and runs the binary
// with it. (Compiled, not run: it needs the binaries from make controlplane.)
func Example() {
	ctx := context.Background()
	cp, err := ctrlplane.Start(ctx, ctrlplane.Options{})
	if err != nil {
		log.Fatal(err) // wraps ctrlplane.ErrNotBuilt without make controlplane
	}
	defer cp.Stop()

	// The ServiceAccount the deploy manifests bind ClusterRoles to.
	ccm := ctrlplane.User{
		Name:   "system:serviceaccount:kube-system:cloud-controller-manager",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"},
	}
	kubeconfig := filepath.Join(cp.Dir(), "kubeconfig-ccm")
	if err := cp.WriteKubeconfig(kubeconfig, ccm); err != nil {
		log.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "./bin/localcloud-ccm", "--kubeconfig="+kubeconfig, "--cloud-provider=localcloud")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Println("admin kubeconfig:", cp.Kubeconfig())
	if err := cmd.Run(); err != nil {
		log.Print(err)
	}
}
