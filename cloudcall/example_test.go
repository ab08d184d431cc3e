package cloudcall_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ccmkit/ccmkit/cloudcall"
)

// A backend classifies its SDK's errors; the budget retries the transient
// one and returns the rest unchanged.
func ExampleBudget_Do() {
	budget, err := cloudcall.NewBudget(cloudcall.BudgetOptions{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		panic(err)
	}
	attempts := 0
	err = budget.Do(context.Background(), cloudcall.Read("lb", "GetLoadBalancer"), func(ctx context.Context) error {
		attempts++
		if attempts == 1 {
			return cloudcall.Transient(errors.New("connection reset"))
		}
		return cloudcall.NotFound(errors.New("no such load balancer"))
	})
	fmt.Println(attempts, errors.Is(err, cloudcall.ErrNotFound))
	// Output: 2 true
}

func ExampleClassify() {
	for _, err := range []error{
		nil,
		cloudcall.Throttled(5*time.Second, errors.New("429")),
		errors.New("unexpected"),
	} {
		fmt.Println(cloudcall.Classify(err))
	}
	// Output:
	// ok
	// throttled
	// permanent
}
