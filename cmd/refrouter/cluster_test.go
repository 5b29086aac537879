package main

import (
	"bytes"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

type serveProc struct {
	name, url, config string
	cmd               *exec.Cmd
	stderr            *bytes.Buffer
}

func startServe(t *testing.T, p *serveProc) {
	t.Helper()
	p.stderr = &bytes.Buffer{}
	p.cmd = exec.Command(binary(t), "serve", "--config", p.config)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := p.cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// TestSeparateProcessesFailover runs the three demo regions as three
// `refrouter serve` processes (configs as `demo --write-configs` writes them,
// with the lan profile), SIGKILLs the raft leader and checks: the others
// route around it, elect a new leader and keep taking writes; the killed
// node restarts on its data dir, rejoins and catches up.
func TestSeparateProcessesFailover(t *testing.T) {
	dir := t.TempDir()
	o := localcluster.Options{Sites: localcluster.DemoSites, DataDir: dir, BasePort: testutil.FreeBase(t, 10), Profile: "lan"}
	sec, err := localcluster.LoadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgs := localcluster.Configs(o, sec)
	paths, err := localcluster.WriteConfigs(filepath.Join(dir, "configs"), cfgs)
	if err != nil {
		t.Fatal(err)
	}
	procs := make([]*serveProc, len(cfgs))
	for i, c := range cfgs {
		procs[i] = &serveProc{name: c.Name, url: c.PublicURL, config: paths[i]}
		startServe(t, procs[i])
	}
	c := testutil.NewClient()
	ready := func(p *serveProc) bool {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	for _, p := range procs {
		testutil.WaitFor(t, 60*time.Second, p.name+" ready", func() bool { return ready(p) })
	}
	var st struct{ Leader string }
	c.Do(t, "GET", procs[0].url+"/v1/cluster", sec.AdminToken, nil).JSON(t, &st)
	leader, follower := -1, -1
	for i, p := range procs {
		if p.name == st.Leader {
			leader = i
		} else if follower < 0 {
			follower = i
		}
	}
	if leader < 0 {
		t.Fatalf("no leader in %+v", st)
	}
	camp := testutil.Campaign("fo", 1000, 10)
	camp["fraud"] = map[string]any{"min_click_to_register": "-1s"}
	testutil.Expect(t, c.Do(t, "POST", procs[follower].url+"/v1/campaigns", sec.AdminToken, camp), 201, "campaign on a follower")
	r := c.Do(t, "POST", procs[follower].url+"/v1/campaigns/fo/links", sec.PlatformToken, map[string]string{"inviter": "alice"})
	testutil.Expect(t, r, 201, "link")
	var l struct{ Code string }
	r.JSON(t, &l)
	for _, p := range procs {
		testutil.Expect(t, c.Do(t, "GET", p.url+"/"+l.Code, "", nil, "User-Agent", "Mozilla/5.0 (iPhone)"), 302, "redirect on "+p.name)
	}

	// SIGKILL the leader.
	killed := procs[leader]
	killed.cmd.Process.Signal(syscall.SIGKILL)
	killed.cmd.Wait()
	killedAt := time.Now()
	var survivors []*serveProc
	for i, p := range procs {
		if i != leader {
			survivors = append(survivors, p)
		}
	}
	for _, p := range survivors {
		testutil.WaitFor(t, 20*time.Second, killed.name+" gone from "+p.name+"'s /v1/nearest", func() bool {
			body := string(c.Do(t, "GET", p.url+"/v1/nearest", "", nil).Body)
			return !strings.Contains(body, `"`+killed.name+`"`)
		})
	}
	t.Logf("%s routed around %.1f s after SIGKILL (lan profile)", killed.name, time.Since(killedAt).Seconds())

	// Writes resume under a new leader; the redirect never stopped.
	testutil.WaitFor(t, 30*time.Second, "a write after the failover", func() bool {
		r := c.Do(t, "POST", survivors[0].url+"/v1/campaigns", sec.AdminToken, testutil.Campaign("after", 1000, 10))
		return r.Status == 201
	})
	r = c.Do(t, "POST", survivors[1].url+"/v1/registrations?wait=10s", sec.PlatformToken,
		map[string]string{"campaign": "fo", "code": l.Code, "invitee": "bob"})
	testutil.Expect(t, r, 200, "registration decided by the new leader")
	var dec struct{ ID, Status string }
	r.JSON(t, &dec)
	if dec.Status != "rewarded" {
		t.Fatalf("decision after failover: %s", r.Body)
	}

	// The killed node restarts on its data dir and catches up on what it missed.
	startServe(t, killed)
	testutil.WaitFor(t, 60*time.Second, killed.name+" ready again", func() bool { return ready(killed) })
	testutil.WaitFor(t, 20*time.Second, killed.name+" caught up", func() bool {
		r1 := c.Do(t, "GET", killed.url+"/v1/campaigns/after", sec.AdminToken, nil)
		r2 := c.Do(t, "GET", killed.url+"/v1/registrations/"+dec.ID, sec.PlatformToken, nil)
		return r1.Status == 200 && r2.Status == 200 && strings.Contains(string(r2.Body), "rewarded")
	})
	// Every node answers the same cluster: three members alive.
	for _, p := range procs {
		testutil.WaitFor(t, 20*time.Second, p.name+" sees three nodes", func() bool {
			var n struct{ Nodes []struct{ Name string } }
			c.Do(t, "GET", p.url+"/v1/nearest", "", nil).JSON(t, &n)
			return len(n.Nodes) == 3
		})
	}
}
