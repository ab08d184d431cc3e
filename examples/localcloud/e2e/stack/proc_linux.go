package stack

import "syscall"

// sysProcAttr makes the kernel kill a child when its parent dies without
// stopping it (a test binary's timeout panic skips every cleanup).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
