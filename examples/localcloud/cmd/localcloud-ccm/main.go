// Command localcloud-ccm is the cloud-controller-manager of ccmkit's
// example provider, for the local cloud (cmd/localcloud). It has every flag
// of upstream's cloud-controller-manager and ccmkit's (--help).
//
//	localcloud-ccm --cloud-config=cloud.json --kubeconfig=ccm.kubeconfig \
//	  --cluster-name=local --cluster-cidr=10.244.0.0/16 --allocate-node-cidrs \
//	  --use-service-account-credentials
package main

import (
	"fmt"
	"os"

	"github.com/ccmkit/ccmkit/examples/localcloud/provider"
	"github.com/ccmkit/ccmkit/framework"
)

func main() {
	cmd, err := framework.NewCommand(framework.CommandOptions{
		ProviderName: provider.Name,
		NewProvider:  provider.New,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(framework.Run(cmd))
}
