package netns_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/deploy/netns"
)

// helperEnv makes the test binary act as a tiny HTTP server (see TestMain),
// so the plumbing test needs neither python nor a separate build.
const helperEnv = "RR_NETNS_HELPER_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(helperEnv); addr != "" {
		serveHelper(addr)
		return
	}
	os.Exit(m.Run())
}

func serveHelper(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper listen:", err)
		os.Exit(2)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s", addr)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	_ = srv.Serve(ln) // runs until the test kills the process
}

// waitFor polls cond every 50ms until it is true or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(body), nil
}

func TestPlumbing(t *testing.T) {
	var run string
	t.Run("hosts", func(t *testing.T) {
		n := netns.Start(t, 2)
		run = n.Run()
		if got := n.Namespaces(); len(got) != 3 {
			t.Fatalf("namespaces %v, want 2 hosts and a switch", got)
		}
		if a := n.Addr(2).String(); a != "10.213.0.2" {
			t.Fatalf("Addr(2) = %s", a)
		}

		// The test range exists only inside the namespaces.
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.To4()[0] == 10 && ipn.IP.To4()[1] == 213 {
				t.Fatalf("root namespace has test address %v", a)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := n.Exec(ctx, 1, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if err != nil || !strings.Contains(string(out), "10.213.0.1/24") {
			t.Fatalf("host 1 eth0: %v: %s", err, out)
		}

		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		srvAddr := net.JoinHostPort(n.Addr(1).String(), "8000")
		cmd := n.Command(context.Background(), 1, exe)
		cmd.Env = append(os.Environ(), helperEnv+"="+srvAddr)
		cmd.Stderr = os.Stderr
		proc, err := n.StartProcess(1, cmd)
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + srvAddr + "/"
		from2 := n.HTTPClient(2, 500*time.Millisecond)
		from1 := n.HTTPClient(1, 500*time.Millisecond)
		waitFor(t, 10*time.Second, "server in host 1 reachable from host 2", func() error {
			body, err := get(from2, url)
			if err == nil && body != "hello from "+srvAddr {
				return fmt.Errorf("body %q", body)
			}
			return err
		})

		// Not reachable from the root namespace. (Some sandboxes route
		// everything to a gateway that answers any TCP connection, so the
		// check is that our server is not the one answering.)
		root := &http.Client{Timeout: time.Second}
		if body, err := get(root, url); err == nil && strings.HasPrefix(body, "hello from") {
			t.Fatalf("root namespace reached the server in host 1")
		}

		n.Cut(1)
		if _, err := get(from2, url); err == nil {
			t.Fatal("host 2 reached host 1 while host 1 was cut off")
		}
		if _, err := get(from1, url); err != nil {
			t.Fatalf("host 1 cannot reach itself while cut off: %v", err)
		}

		n.Heal(1)
		waitFor(t, 10*time.Second, "host 1 reachable again after heal", func() error {
			_, err := get(from2, url)
			return err
		})

		n.Kill(1)
		select {
		case <-proc.Done():
		default:
			t.Fatal("process still running after Kill")
		}
		if _, err := get(from2, url); err == nil {
			t.Fatal("server answered after Kill")
		}
		if _, err := n.DialContext(ctx, 3, "tcp", srvAddr); !errors.Is(err, netns.ErrNoHost) {
			t.Fatalf("dial from host 3 of 2: %v, want ErrNoHost", err)
		}
	})
	if run == "" {
		return // skipped
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "rr-"+run+"-") {
		t.Fatalf("namespaces of run %s left behind:\n%s", run, out)
	}
}

// TestScriptArgs checks netns.sh's argument handling; these cases exit
// before touching the network, so they need no root.
func TestScriptArgs(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no command", nil, "usage"},
		{"bad run name", []string{"-r", "Bad_Name", "list"}, "run name"},
		{"long run name", []string{"-r", "abcdefghijklm", "list"}, "run name"},
		{"unknown command", []string{"-r", "x1", "frob"}, "unknown command"},
		{"up zero", []string{"-r", "x1", "up", "0"}, "N must be"},
		{"up too many", []string{"-r", "x1", "up", "251"}, "N must be"},
		{"up not a number", []string{"-r", "x1", "up", "three"}, "N must be"},
		{"cut not a number", []string{"-r", "x1", "cut", "h1"}, "host must be a number"},
		{"kill not a number", []string{"-r", "x1", "kill", "x"}, "host must be a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command("bash", append([]string{netns.Script()}, tt.args...)...).CombinedOutput()
			if err == nil {
				t.Fatalf("netns.sh %v succeeded: %s", tt.args, out)
			}
			if !strings.Contains(string(out), tt.wantErr) {
				t.Fatalf("netns.sh %v: %q, want it to mention %q", tt.args, out, tt.wantErr)
			}
		})
	}
}

// TestScriptDownIdempotent checks that down succeeds when nothing exists.
func TestScriptDownIdempotent(t *testing.T) {
	if err := netns.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	for range 2 {
		if out, err := exec.Command("bash", netns.Script(), "-r", "nothere", "down").CombinedOutput(); err != nil {
			t.Fatalf("down on an absent run: %v: %s", err, out)
		}
	}
}
