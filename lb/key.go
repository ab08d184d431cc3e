package lb

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Key is the ownership key of a load balancer: the cluster that made it and
// the UID of the Service it serves. Backends store Key.String() on the cloud
// resource and find load balancers by it. It is a comparable value.
//
// The format of Key.String and of Name is frozen: a later ccmkit version
// that changed either could not find the load balancers made by this one,
// and would orphan them and create new ones. Golden tests pin both.
type Key struct {
	Cluster string
	UID     types.UID
}

// keyPrefix versions the ownership key's format.
const keyPrefix = "ccmkit-v1/"

// ErrInvalidKey is wrapped by ParseKey's errors.
var ErrInvalidKey = errors.New("invalid load balancer ownership key")

// IsZero reports whether k is the zero Key (a load balancer owned by no
// ccmkit cluster).
func (k Key) IsZero() bool { return k == Key{} }

// String returns the key as stored on the cloud resource:
// "ccmkit-v1/<cluster>/<uid>". The zero Key gives "".
func (k Key) String() string {
	if k.IsZero() {
		return ""
	}
	return keyPrefix + k.Cluster + "/" + string(k.UID)
}

// ParseKey parses the result of Key.String. The cluster name may contain
// '/'; the UID is the part after the last one. Both must be non-empty.
// Errors wrap ErrInvalidKey.
func ParseKey(s string) (Key, error) {
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok {
		return Key{}, fmt.Errorf("%w %q: want prefix %q", ErrInvalidKey, s, keyPrefix)
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return Key{}, fmt.Errorf("%w %q: want %s<cluster>/<service-uid>", ErrInvalidKey, s, keyPrefix)
	}
	return Key{Cluster: rest[:i], UID: types.UID(rest[i+1:])}, nil
}

// namePrefix starts every ccmkit load balancer name.
const namePrefix = "ccmkit-"

// Name returns the load balancer name of the Service with uid:
// "ccmkit-" and the UID without dashes (39 characters for a standard UID).
// It depends on the Service UID only, not on the cluster name, so that a
// changed --cluster-name collides with the existing load balancer (and is
// reported) instead of creating a second one.
func Name(uid types.UID) string {
	return namePrefix + strings.ReplaceAll(string(uid), "-", "")
}
