package ctrlplane

import "syscall"

// sysProcAttr makes the kernel kill a child if the test binary dies without
// running Stop (a go test -timeout panic skips every t.Cleanup).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
