package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/refrouter/refrouter/attribution"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/internal/testutil"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the refrouter binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "refrouter-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "refrouter")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

type demoProc struct {
	cmd    *exec.Cmd
	info   demoInfo
	stderr *lockedBuffer
}

// lockedBuffer is a bytes.Buffer that the test may read while the process
// still writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDemo runs `refrouter demo --json` as a subprocess and waits for its JSON line.
func startDemo(t *testing.T, dataDir string, base int) *demoProc {
	t.Helper()
	cmd := exec.Command(binary(t), "demo", "--json", "--data-dir", dataDir, "--base-port", strconv.Itoa(base))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &demoProc{cmd: cmd, stderr: stderr}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 1) // closed without a line if stdout ends first
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "{") {
				lines <- sc.Text()
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			err := cmd.Wait()
			t.Fatalf("demo ended (%v) before its JSON line; stderr: %s", err, stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &p.info); err != nil {
			t.Fatalf("demo JSON %q: %v", line, err)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("demo printed no JSON line; stderr: %s", stderr.String())
	}
	return p
}

// TestKill9KeepsAcknowledgedRegistration: SIGKILL right after the 202, restart
// on the same data dir, and the registration is there and decided once (I4).
func TestKill9KeepsAcknowledgedRegistration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // not there yet: the demo makes it
	base := testutil.FreeBase(t, 10)
	d := startDemo(t, dir, base)
	c := testutil.NewClient()
	n1 := d.info.Nodes[0].URL
	camp := testutil.Campaign("k9", 1000, 10)
	camp["fraud"] = map[string]any{"min_click_to_register": "-1s"}
	testutil.Expect(t, c.Do(t, "POST", n1+"/v1/campaigns", d.info.AdminToken, camp), 201, "campaign")
	r := c.Do(t, "POST", n1+"/v1/campaigns/k9/links", d.info.PlatformToken, map[string]string{"inviter": "alice"})
	testutil.Expect(t, r, 201, "link")
	var l struct{ Code, URL string }
	r.JSON(t, &l)
	r = c.Do(t, "GET", l.URL, "", nil, "User-Agent", "Mozilla/5.0 (iPhone)")
	testutil.Expect(t, r, 302, "click")
	loc, _ := url.Parse(r.Header.Get("Location"))
	var ids []string
	for i := 0; i < 5; i++ {
		r = c.Do(t, "POST", n1+"/v1/registrations", d.info.PlatformToken,
			map[string]string{"campaign": "k9", "click": loc.Query().Get("rr_click"), "invitee": "bob" + strconv.Itoa(i)})
		if r.Status != 202 && r.Status != 200 {
			t.Fatalf("register: %d %s", r.Status, r.Body)
		}
		var v struct{ ID string }
		r.JSON(t, &v)
		ids = append(ids, v.ID)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Wait()

	d2 := startDemo(t, dir, base)
	n1 = d2.info.Nodes[0].URL
	for _, id := range ids {
		r := c.Do(t, "GET", n1+"/v1/registrations/"+id, d2.info.PlatformToken, nil)
		testutil.Expect(t, r, 200, "registration after kill -9")
	}
	for _, id := range ids {
		testutil.WaitFor(t, 20*time.Second, "decision after restart", func() bool {
			r := c.Do(t, "GET", n1+"/v1/registrations/"+id, d2.info.PlatformToken, nil)
			return r.Status == 200 && !strings.Contains(string(r.Body), `"pending"`)
		})
	}
	r = c.Do(t, "GET", n1+"/v1/campaigns/k9", d2.info.AdminToken, nil)
	var v struct {
		Stats struct{ Registrations, Rewarded int }
	}
	r.JSON(t, &v)
	if v.Stats.Registrations != len(ids) || v.Stats.Rewarded != len(ids) {
		t.Fatalf("stats after restart: %+v, want %d registrations decided once each", v.Stats, len(ids))
	}
	// Graceful stop on SIGTERM, with no error logged on the way out (the
	// nodes stop one after another; the later ones must not log the earlier
	// ones' going away as errors).
	before := len(d2.stderr.String())
	d2.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d2.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30 s of SIGTERM")
	}
	if tail := d2.stderr.String()[before:]; strings.Contains(tail, "level=ERROR") {
		t.Fatalf("errors logged while the demo stopped:\n%s", tail)
	}
}

// TestCLIErrorsAreOneLine: bad input to the CLI exits non-zero with one line on stderr (I7).
func TestCLIErrorsAreOneLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: Bad_Name\nlat: 500\n"), 0o600)
	codes := filepath.Join(t.TempDir(), "codes.txt")
	os.WriteFile(codes, []byte("CsYd7glmpj3kdhuh\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"serve"}, "no config file"},
		{"missing file", []string{"serve", "--config", "/nonexistent.yaml"}, "/nonexistent.yaml"},
		{"invalid config", []string{"serve", "--config", bad}, "name"},
		{"unknown command", []string{"fly"}, "unknown command"},
		{"geo without db", []string{"geo", "lookup", "1.2.3.4"}, "--db"},
		{"missing geo db", []string{"geo", "lookup", "--db", "/nonexistent.mmdb", "1.2.3.4"}, "nonexistent"},
		{"bench with no good answer", []string{"bench", "redirect", "--target", "http://127.0.0.1:1", "--codes", codes,
			"--rate", "20", "--duration", "500ms", "--warmup", "0s", "--connections", "1", "--timeout", "200ms"}, "none of 10 requests succeeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary(t), tt.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatal("exit 0")
			}
			msg := strings.TrimRight(stderr.String(), "\n")
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tt.want) {
				t.Fatalf("stderr %q: want one line mentioning %q", msg, tt.want)
			}
		})
	}
}

// TestLinkCommandOffline: codes issued offline verify offline and forged ones do not.
func TestLinkCommandOffline(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "n.yaml")
	os.WriteFile(cfg, []byte(`name: n1
tokens: [{token: admin-token-0123456789, role: admin}]
secrets: [{gen: 1, key: "`+strings.Repeat("QUJD", 11)+`"}]
`), 0o600)
	out, err := exec.Command(binary(t), "link", "issue", "--config", cfg, "--campaign-number", "7", "--inviter-number", "42").Output()
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	var got struct{ Code string }
	json.Unmarshal(out, &got)
	if len(got.Code) != 16 {
		t.Fatalf("code %q", got.Code)
	}
	out, err = exec.Command(binary(t), "link", "verify", "--config", cfg, got.Code).Output()
	if err != nil || !strings.Contains(string(out), `"inviter_number":42`) || !strings.Contains(string(out), `"campaign_number":7`) {
		t.Fatalf("verify: %v %s", err, out)
	}
	forged := got.Code[:15] + map[bool]string{true: "B", false: "A"}[got.Code[15] == 'A']
	if err := exec.Command(binary(t), "link", "verify", "--config", cfg, forged).Run(); err == nil {
		t.Fatal("forged code verified")
	}
}

// TestOutboxCommand: `outbox status` lists a stopped node's cursors,
// `outbox drop-cursor` forgets one, and both refuse an outbox in use.
func TestOutboxCommand(t *testing.T) {
	dataDir := t.TempDir()
	o, err := outbox.Open(outbox.Options{Dir: filepath.Join(dataDir, "outbox")})
	if err != nil {
		t.Fatal(err)
	}
	evs := []attribution.Event{{ID: "c1", Kind: attribution.KindClick}, {ID: "c2", Kind: attribution.KindClick}, {ID: "c3", Kind: attribution.KindClick}}
	if _, err := o.Append(context.Background(), true, evs...); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit("replicator", 2); err != nil {
		t.Fatal(err)
	}
	if err := o.Commit("submitter", 4); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var stderr bytes.Buffer
		cmd := exec.Command(binary(t), append([]string{"outbox"}, append(args, "--data-dir", dataDir)...)...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return strings.TrimSpace(stderr.String()), err
		}
		return string(out), nil
	}
	if msg, err := run("status"); err == nil || !strings.Contains(msg, "in use") || strings.Contains(msg, "\n") {
		t.Fatalf("status of an outbox in use: %v, stderr %q", err, msg)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := run("status")
	if err != nil || !strings.Contains(out, "cursor replicator 2\n") || !strings.Contains(out, "cursor submitter 4\n") || !strings.Contains(out, "last 3\n") {
		t.Fatalf("status: %v %q", err, out)
	}
	if out, err := run("drop-cursor", "replicator"); err != nil {
		t.Fatalf("drop-cursor: %v %q", err, out)
	}
	out, err = run("status")
	if err != nil || strings.Contains(out, "replicator") || !strings.Contains(out, "cursor submitter 4\n") {
		t.Fatalf("status after the drop: %v %q", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"drop-cursor", "nosuch"}, "no cursor"},
		{[]string{"drop-cursor", "submitter"}, "never dropped"},
	} {
		if msg, err := run(tc.args...); err == nil || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: %v, stderr %q", tc.args, err, msg)
		}
	}
	// A wrong --data-dir is an error, and nothing is created there.
	wrong := filepath.Join(t.TempDir(), "typo")
	cmd := exec.Command(binary(t), "outbox", "status", "--data-dir", wrong)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no outbox directory") {
		t.Errorf("status of a wrong --data-dir: %v %q", err, out)
	}
	if _, err := os.Stat(wrong); !os.IsNotExist(err) {
		t.Errorf("status created %s: %v", wrong, err)
	}
}
