package deploy

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
