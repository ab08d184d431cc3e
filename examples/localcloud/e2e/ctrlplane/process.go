package ctrlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// pollInterval is how often Start probes a starting process.
const pollInterval = 100 * time.Millisecond

// process is one child process whose stdout and stderr go to a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // cmd.Wait's result, set before done is closed
}

func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to exit. It reports an error
// if the process had already exited on its own.
func (p *process) kill() error {
	if p.exited() {
		return fmt.Errorf("%s exited before Stop: %v", p.name, p.err)
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// waitReady calls probe every pollInterval until it returns nil, the process
// exits (an *exitError) or ctx is done.
func (p *process) waitReady(ctx context.Context, probe func(context.Context) error) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := probe(probeCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return &exitError{name: p.name, err: p.err, log: tail(p.logPath, tailBytes)}
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last probe: %v)\n%s", p.name, context.Cause(ctx), err, tail(p.logPath, tailBytes))
		case <-ticker.C:
		}
	}
}

// exitError is a process that exited while Start waited for it.
type exitError struct {
	name string
	err  error
	log  []byte // the end of its log
}

func (e *exitError) Error() string {
	return fmt.Sprintf("%s exited during start-up (%v); the end of its log:\n%s", e.name, e.err, e.log)
}

// portInUse reports whether the process failed because a port was taken
// between freePorts and its bind: the only way to tell is its log.
func (e *exitError) portInUse() bool {
	return bytes.Contains(e.log, []byte("address already in use"))
}

// freePorts returns n distinct loopback ports that were free a moment ago:
// each is listened on 127.0.0.1:0 and closed. Another process may take one
// before the child binds it; Start then retries on new ports.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// tailBytes bounds the log excerpts in errors and failed tests.
const tailBytes = 32 << 10

// tail returns the last n bytes of the file at path, from a line start.
func tail(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return []byte(err.Error())
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return []byte(err.Error())
	}
	off := max(fi.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return []byte(err.Error())
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		b = append([]byte("[...]\n"), b...)
	}
	return b
}
