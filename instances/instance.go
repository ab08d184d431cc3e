package instances

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// State is an instance's lifecycle state as the cloud reports it.
type State int

// The states. The zero value is invalid: a Source must say what it saw.
const (
	StateUnspecified State = iota
	// StatePending: being created or started; exists, not shut down.
	StatePending
	// StateRunning: exists, not shut down.
	StateRunning
	// StateStopped: exists and is shut down (the node gets the shutdown taint).
	StateStopped
	// StateTerminated: gone or going; its Node is deleted.
	StateTerminated
)

func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateRunning:
		return "running"
	case StateStopped:
		return "stopped"
	case StateTerminated:
		return "terminated"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// Instance is what the cloud knows about one machine. The block treats a
// returned *Instance as immutable: a Source must not change it afterwards,
// and callers of Cache.Get must not modify it.
type Instance struct {
	// ID is the cloud's instance ID, required. It is what follows
	// "<provider>://" in the Node's spec.providerID.
	ID string
	// NodeName is the name of the Node this instance runs, when known.
	NodeName string
	// ProviderID overrides the default "<provider>://<ID>" providerID.
	ProviderID string
	// Type is the instance type (label node.kubernetes.io/instance-type).
	Type string
	// Zone and Region are the failure domain (topology.kubernetes.io labels).
	Zone, Region string
	// State is required.
	State State
	// Addresses are the node addresses to publish.
	Addresses []v1.NodeAddress
	// PodCIDRs are pod ranges the cloud assigned to this instance, for the
	// ipam block's cloud mode. Empty when the cloud does not assign them.
	PodCIDRs []string
	// Labels are extra labels to set on the Node at initialization.
	Labels map[string]string
}

// Key identifies the instance to look up: by ID when set (from the Node's
// providerID, which is authoritative), otherwise by node name.
type Key struct {
	ID       string
	NodeName string
}

func (k Key) String() string {
	if k.ID != "" {
		return "id:" + k.ID
	}
	return "node:" + k.NodeName
}

// Source looks instances up in the cloud. Implementations must be safe for
// concurrent use.
//
// Lookup returns the instance with key.ID when key.ID is set, otherwise the
// instance running the node key.NodeName. When there is none it returns an
// error wrapping cloudcall.ErrNotFound (see cloudcall.NotFound); other errors
// should be classified with the cloudcall helpers so the budget can retry
// them. It must never return (nil, nil).
type Source interface {
	Lookup(ctx context.Context, key Key) (*Instance, error)
}

// SourceFunc adapts a function to a Source.
type SourceFunc func(ctx context.Context, key Key) (*Instance, error)

// Lookup calls f.
func (f SourceFunc) Lookup(ctx context.Context, key Key) (*Instance, error) { return f(ctx, key) }

// Lister is an optional capability of a Source: list every instance of the
// cluster in one call (paginating inside if the cloud needs it). When the
// Source implements it, the Cache refreshes all entries with one List.
type Lister interface {
	List(ctx context.Context) ([]*Instance, error)
}

// Errors returned by the block.
var (
	// ErrInvalidKey: a lookup with neither ID nor node name.
	ErrInvalidKey = errors.New("instance key has neither ID nor node name")
	// ErrInconsistent: the Source returned data that cannot be right (nil
	// instance without error, no ID, no state, another instance than asked).
	ErrInconsistent = errors.New("inconsistent instance data from cloud")
	// ErrInvalidNode: a nil Node, or one with neither name nor providerID.
	ErrInvalidNode = errors.New("invalid node")
)

// validate checks what a Source returned for key.
func validate(inst *Instance, key Key) error {
	switch {
	case inst == nil:
		return fmt.Errorf("%w: lookup of %s returned no instance and no error", ErrInconsistent, key)
	case inst.ID == "":
		return fmt.Errorf("%w: instance for %s has no ID", ErrInconsistent, key)
	case inst.State < StatePending || inst.State > StateTerminated:
		return fmt.Errorf("%w: instance %q has invalid state %v", ErrInconsistent, inst.ID, inst.State)
	case key.ID != "" && inst.ID != key.ID:
		return fmt.Errorf("%w: lookup of %s returned instance %q", ErrInconsistent, key, inst.ID)
	case key.ID == "" && key.NodeName != "" && inst.NodeName != "" && inst.NodeName != key.NodeName:
		return fmt.Errorf("%w: lookup of %s returned instance %q of node %q", ErrInconsistent, key, inst.ID, inst.NodeName)
	}
	return nil
}

// isNotFound reports whether err means the instance does not exist.
func isNotFound(err error) bool { return errors.Is(err, cloudcall.ErrNotFound) }
