// Package netns runs a multi-host network on one machine for tests: each
// host is a Linux network namespace with one address in 10.213.0.0/24,
// plugged into a bridge that lives in its own "switch" namespace. It wraps
// netns.sh (next to this file), which does the plumbing, and adds process
// management (start, kill) and dialing into a host from the test process.
//
// It needs root and iproute2. Start skips the test when they are missing,
// except that with CI=true as root any setup failure fails the test.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Subnet is the address range of the hosts; host i has address 10.213.0.i.
// It exists only inside the namespaces this package creates.
var Subnet = netip.MustParsePrefix("10.213.0.0/24")

// ErrUnavailable reports that this machine cannot create network namespaces
// (not root, no iproute2, or ip netns not permitted).
var ErrUnavailable = errors.New("netns: network namespaces unavailable")

// ErrNoHost reports a host number outside 1..N.
var ErrNoHost = errors.New("netns: no such host")

// MaxHosts is the largest N that Start accepts.
const MaxHosts = 250

// Check reports whether network namespaces can be used here. The error
// wraps ErrUnavailable and says why.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: need root (euid %d)", ErrUnavailable, os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: iproute2 not installed: %v", ErrUnavailable, err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Errorf("%w: ip netns list: %v: %s", ErrUnavailable, err, bytes.TrimSpace(out))
	}
	return nil
}

// Script returns the path of netns.sh, which sits next to this source file.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "netns.sh")
}

// Net is a running set of hosts. Its methods must be called from the test's
// own goroutine (they call tb.Fatal on failure), except DialContext and
// HTTPClient, which are safe for concurrent use. The hosts, their processes
// and namespaces are removed in tb.Cleanup.
type Net struct {
	tb     testing.TB
	run    string
	n      int
	script string

	mu    sync.Mutex
	procs map[int][]*Process
}

// Process is a process started in a host. Net owns it: Kill or the test's
// cleanup kills it and waits for it.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error; it is valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Start creates n hosts (1..n) for the test and removes them in tb.Cleanup.
// When namespaces are unavailable it skips the test, unless CI=true and the
// process is root, in which case it fails the test.
func Start(tb testing.TB, n int) *Net {
	tb.Helper()
	if n < 1 || n > MaxHosts {
		tb.Fatalf("netns.Start: n = %d, want 1..%d", n, MaxHosts)
	}
	ci := os.Getenv("CI") == "true"
	if err := Check(); err != nil {
		if ci && os.Geteuid() == 0 {
			tb.Fatalf("CI=true as root, but %v", err)
		}
		tb.Skipf("skipping multi-host test: %v", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("netns: run id: %v", err)
	}
	nt := &Net{
		tb:     tb,
		run:    "t" + hex.EncodeToString(b[:]),
		n:      n,
		script: Script(),
		procs:  map[int][]*Process{},
	}
	if out, err := nt.runScript("up", strconv.Itoa(n)); err != nil {
		if ci {
			tb.Fatalf("netns up %d: %v: %s", n, err, out)
		}
		tb.Skipf("skipping multi-host test: netns up %d: %v: %s", n, err, out)
	}
	tb.Cleanup(nt.close)
	return nt
}

func (nt *Net) runScript(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{nt.script, "-r", nt.run}, args...)...)
	// The script must never kill this process (see kill).
	cmd.Env = append(os.Environ(), "NETNS_KEEP_PIDS="+strconv.Itoa(os.Getpid()))
	out, err := cmd.CombinedOutput()
	return bytes.TrimSpace(out), err
}

// close kills every process and deletes the namespaces; it reports
// namespaces left behind as a test error.
func (nt *Net) close() {
	for i := 1; i <= nt.n; i++ {
		nt.kill(i)
	}
	if out, err := nt.runScript("down"); err != nil {
		nt.tb.Errorf("netns down: %v: %s", err, out)
	}
	if left := nt.Namespaces(); len(left) > 0 {
		nt.tb.Errorf("netns: namespaces left behind: %v", left)
	}
}

// Run returns the run id; every namespace of the run is named rr-<run>-*.
func (nt *Net) Run() string { return nt.run }

// N returns the number of hosts.
func (nt *Net) N() int { return nt.n }

// Namespaces lists the run's namespaces that exist now.
func (nt *Net) Namespaces() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "rr-"+nt.run+"-") {
			names = append(names, f[0])
		}
	}
	return names
}

// Namespace returns host i's namespace name.
func (nt *Net) Namespace(i int) string {
	nt.checkHost(i)
	return fmt.Sprintf("rr-%s-h%d", nt.run, i)
}

// Addr returns host i's address (10.213.0.i).
func (nt *Net) Addr(i int) netip.Addr {
	nt.checkHost(i)
	a := Subnet.Addr().As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a)
}

func (nt *Net) checkHost(i int) {
	if i < 1 || i > nt.n {
		nt.tb.Fatalf("%v: host %d of %d", ErrNoHost, i, nt.n)
	}
}

// Command returns a command that runs name with args inside host i. It is
// neither started nor tracked; start it with StartProcess to have Kill and
// cleanup manage it, or run it to completion yourself.
func (nt *Net) Command(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", nt.Namespace(i), name}, args...)...)
}

// Exec runs name with args inside host i to completion and returns its
// combined output.
func (nt *Net) Exec(ctx context.Context, i int, name string, args ...string) ([]byte, error) {
	out, err := nt.Command(ctx, i, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("exec %s in host %d: %w", name, i, err)
	}
	return out, nil
}

// StartProcess starts cmd, which must come from Command(ctx, i, ...), and
// tracks it as a process of host i.
func (nt *Net) StartProcess(i int, cmd *exec.Cmd) (*Process, error) {
	nt.checkHost(i)
	if len(cmd.Args) < 4 || cmd.Args[3] != nt.Namespace(i) {
		return nil, fmt.Errorf("netns: command %v does not run in host %d", cmd.Args, i)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %v in host %d: %w", cmd.Args[4:], i, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	nt.mu.Lock()
	nt.procs[i] = append(nt.procs[i], p)
	nt.mu.Unlock()
	return p, nil
}

// Kill kills (SIGKILL) every process of host i, tracked or not, and waits
// for the tracked ones to exit. The host's network stays up.
func (nt *Net) Kill(i int) {
	nt.tb.Helper()
	nt.checkHost(i)
	nt.kill(i)
}

func (nt *Net) kill(i int) {
	nt.mu.Lock()
	procs := nt.procs[i]
	delete(nt.procs, i)
	nt.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	// Strays: children and anything started with Command but not tracked.
	if out, err := exec.Command("ip", "netns", "pids", fmt.Sprintf("rr-%s-h%d", nt.run, i)).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			// Never this process: DialContext briefly moves one of its
			// threads (possibly the main one) into a host's namespace.
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			nt.tb.Errorf("netns: process %d of host %d did not exit after SIGKILL", p.Pid(), i)
		}
	}
}

// Cut unplugs host i from the switch: its packets are dropped (peers see
// timeouts, not refusals), while the host still reaches its own address.
func (nt *Net) Cut(i int) {
	nt.tb.Helper()
	nt.checkHost(i)
	if out, err := nt.runScript("cut", strconv.Itoa(i)); err != nil {
		nt.tb.Fatalf("netns cut %d: %v: %s", i, err, out)
	}
}

// Heal plugs host i back in.
func (nt *Net) Heal(i int) {
	nt.tb.Helper()
	nt.checkHost(i)
	if out, err := nt.runScript("heal", strconv.Itoa(i)); err != nil {
		nt.tb.Fatalf("netns heal %d: %v: %s", i, err, out)
	}
}

// DialContext dials addr from inside host i's namespace. The connection's
// socket belongs to that namespace, so the test process can talk to the
// hosts without any address in the root namespace. Safe for concurrent use.
func (nt *Net) DialContext(ctx context.Context, i int, network, addr string) (net.Conn, error) {
	if i < 1 || i > nt.n {
		return nil, fmt.Errorf("%w: host %d of %d", ErrNoHost, i, nt.n)
	}
	ns := fmt.Sprintf("/run/netns/rr-%s-h%d", nt.run, i)
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is switched into the namespace only while the socket
		// is created; if switching back fails the thread stays locked and
		// exits with this goroutine, so no other goroutine inherits it.
		runtime.LockOSThread()
		c, restored, err := dialIn(ctx, ns, network, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("dial %s from host %d: %w", addr, i, r.err)
	}
	return r.c, nil
}

// dialIn dials from the namespace at nsPath on the calling (locked) thread;
// restored reports whether the thread is back in its own namespace.
func dialIn(ctx context.Context, nsPath, network, addr string) (c net.Conn, restored bool, err error) {
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, true, fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, true, fmt.Errorf("open netns %q: %w", nsPath, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter netns %q: %w", nsPath, err)
	}
	var d net.Dialer
	c, err = d.DialContext(ctx, network, addr)
	if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
		if c != nil {
			_ = c.Close()
		}
		return nil, false, fmt.Errorf("leave netns %q: %w", nsPath, rerr)
	}
	return c, true, err
}

// HTTPClient returns a client whose connections start in host i, with the
// given overall timeout. Keep-alives are off so that every request sees the
// network as it is now (cut or healed). Redirects are not followed.
func (nt *Net) HTTPClient(i int, timeout time.Duration) *http.Client {
	nt.checkHost(i)
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return nt.DialContext(ctx, i, network, addr)
			},
			DisableKeepAlives: true,
			Proxy:             nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
