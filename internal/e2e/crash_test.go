package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refrouter/refrouter/internal/pgtest"
	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

// refrouterBinary builds cmd/refrouter into a temporary directory of t.
func refrouterBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "refrouter")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/refrouter/refrouter/cmd/refrouter").CombinedOutput()
	if err != nil {
		t.Fatalf("build refrouter: %v: %s", err, out)
	}
	return bin
}

// proc is one `refrouter serve` process.
type proc struct {
	t      *testing.T
	bin    string
	config string
	log    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// start runs `refrouter serve --config` with its output appended to p.log.
func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, "serve", "--config", p.config)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("start %s: %v", p.config, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		logf.Close()
		close(done)
	}(p.cmd, p.done)
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits (then SIGKILL) for the process to end.
func (p *proc) stop() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// waitReady polls GET /readyz of url until it answers 200.
func waitReady(t *testing.T, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, _, err := call("GET", url+"/readyz", "", nil)
		if err == nil && st == 200 {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready:\n%s", p.config, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60s (last: %d %v):\n%s", url, st, err, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKill9MidTrafficExactlyOnce runs three `refrouter serve` processes replicating into
// PostgreSQL, SIGKILLs the raft leader while registrations stream into every node,
// restarts it on the same data dir once the survivors elected a new leader, and checks
// that every acknowledged registration has exactly one registration row and one decision
// row (with its grants) in the database.
// Registrations to the restarted node resume once it is ready.
func TestKill9MidTrafficExactlyOnce(t *testing.T) { testKill9(t, false) }

// TestKill9FastRestart is the same with the killed leader restarted at once, while the
// survivors still forward registrations to its address, and registrations sent to it
// while it starts.
func TestKill9FastRestart(t *testing.T) {
	testKill9(t, true)
}

func testKill9(t *testing.T, fastRestart bool) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes")
	}
	dsn := pgtest.NewDB(t)
	dir := t.TempDir()
	o := localcluster.Options{Sites: localcluster.DemoSites, DataDir: dir, BasePort: testutil.FreeBase(t, 10), DSN: dsn}
	secrets, err := localcluster.LoadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgs := localcluster.Configs(o, secrets)
	paths, err := localcluster.WriteConfigs(filepath.Join(dir, "configs"), cfgs)
	if err != nil {
		t.Fatal(err)
	}
	bin := refrouterBinary(t)
	a := &api{t: t, c: testutil.NewClient(), admin: secrets.AdminToken, platform: secrets.PlatformToken}
	procs := make([]*proc, len(cfgs))
	for i, c := range cfgs {
		a.urls = append(a.urls, c.PublicURL)
		a.names = append(a.names, c.Name)
		a.regions = append(a.regions, c.Region)
		procs[i] = &proc{t: t, bin: bin, config: paths[i], log: filepath.Join(dir, c.Name+".log")}
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop()
		}
		if t.Failed() {
			for _, p := range procs {
				t.Logf("%s:\n%s", p.config, p.tail())
			}
		}
	})
	// Node 0 applies the schema (migrate: true) in New; the others check it at start.
	procs[0].start()
	pool := openPool(t, dsn)
	testutil.WaitFor(t, 60*time.Second, "schema applied by node 0", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n) == nil && n > 0
	})
	procs[1].start()
	procs[2].start()
	for i, p := range procs {
		waitReady(t, a.urls[i], p)
	}

	const camp = "e2e-kill9"
	a.createCampaign(0, campaignBody(camp, 1000))
	inviters := []string{"kim", "lee", "max"}
	var codes []string
	for i, inv := range inviters {
		codes = append(codes, a.link(i, camp, inv))
	}
	a.waitInviters(camp, len(inviters))

	// The victim is the raft leader, as node 0 sees it.
	var rd struct{ Leader string }
	r := a.c.Do(t, "GET", a.urls[0]+"/readyz", "", nil)
	r.JSON(t, &rd)
	victim := indexOf(a.names, rd.Leader)

	tr := newTraffic(a, camp, inviters, codes)
	tr.run([]int{0, 1, 2}, 5*time.Millisecond)
	tr.waitAcks(t, 60, victim, 20, "traffic before the kill")
	procs[victim].kill()
	before, onVictim, _ := tr.counts(victim)
	var victimIDs []string
	tr.mu.Lock()
	for id, ack := range tr.acks {
		if ack.Node == a.names[victim] {
			victimIDs = append(victimIDs, id)
		}
	}
	tr.mu.Unlock()
	var inDB int
	pool.QueryRow(context.Background(), "SELECT count(*) FROM decisions WHERE registration_id = ANY($1)", victimIDs).Scan(&inDB)
	t.Logf("killed %s (leader) after %d acknowledgements, %d by it, of which %d had no decision in the database yet",
		a.names[victim], before, onVictim, len(victimIDs)-inDB)
	tr.waitAcks(t, before+40, victim, onVictim, "traffic on the survivors")
	if !fastRestart {
		tr.pause(victim, true)
		for i := range a.urls {
			if i == victim {
				continue
			}
			testutil.WaitFor(t, 30*time.Second, "a new leader", func() bool {
				var rd struct{ Leader string }
				st, b, err := call("GET", a.urls[i]+"/readyz", "", nil)
				return err == nil && st == 200 && json.Unmarshal(b, &rd) == nil && rd.Leader != "" && rd.Leader != a.names[victim]
			})
		}
	}
	procs[victim].start()
	waitReady(t, a.urls[victim], procs[victim])
	tr.pause(victim, false)
	tr.waitAcks(t, 0, victim, onVictim+10, "traffic on the restarted node")
	acks := tr.finish(t)
	_, _, fails := tr.counts(victim)
	t.Logf("%d registrations acknowledged; %d requests to %s failed while it was down", len(acks), fails, a.names[victim])

	for id, ack := range acks {
		ack.Decision = a.decision(indexOf(a.names, ack.Node), id)
	}
	s := waitReplicated(t, pool, camp, acks, func(id string) (regView, bool) {
		// Recorded durably by the victim but killed before it answered.
		st, b, err := call("GET", a.urls[victim]+"/v1/registrations/"+id, a.platform, nil)
		var v regView
		if err != nil || st != 200 || json.Unmarshal(b, &v) != nil {
			return v, false
		}
		return v, true
	})
	st := a.stats(0, camp)
	if int(st["registrations"]) != len(s.regs) || int(st["rewarded"]) != len(s.regs) {
		t.Fatalf("ledger stats %v; database has %d registrations (%d acknowledged), all to be rewarded", st, len(s.regs), len(acks))
	}
}
