package deploy

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

//go:embed rbac.yaml controllers-rbac.yaml deployment.yaml
var files embed.FS

// Files are the manifests, in the order to apply them.
var Files = []string{"rbac.yaml", "controllers-rbac.yaml", "deployment.yaml"}

// Objects returns the objects of the manifest file name (one of Files).
func Objects(name string) ([]*unstructured.Unstructured, error) {
	data, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(u)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: an object without a kind or a name", name)
		}
		out = append(out, u)
	}
}

// RBAC returns the objects of the RBAC manifests (rbac.yaml and
// controllers-rbac.yaml): ServiceAccount, ClusterRoles, Roles and their
// bindings.
func RBAC() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, f := range Files {
		if !strings.HasSuffix(f, "rbac.yaml") {
			continue
		}
		objs, err := Objects(f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// ContainerName is the CCM's container in deployment.yaml.
const ContainerName = "cloud-controller-manager"

// Deployment returns the Deployment of deployment.yaml, decoded strictly:
// a field the apps/v1 Deployment does not have is an error.
func Deployment() (*appsv1.Deployment, error) {
	objs, err := Objects("deployment.yaml")
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 || objs[0].GetKind() != "Deployment" {
		return nil, fmt.Errorf("deployment.yaml: %d objects, want one Deployment", len(objs))
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(objs[0].Object, &d, true); err != nil {
		return nil, fmt.Errorf("deployment.yaml: %w", err)
	}
	return &d, nil
}

// CCMCommand returns the command of the Deployment's ContainerName
// container: the binary's path, then its flags.
func CCMCommand() ([]string, error) {
	d, err := Deployment()
	if err != nil {
		return nil, err
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			if len(c.Command) == 0 {
				return nil, fmt.Errorf("deployment.yaml: container %s has no command", ContainerName)
			}
			return slices.Clone(c.Command), nil
		}
	}
	return nil, fmt.Errorf("deployment.yaml: no container %s", ContainerName)
}
