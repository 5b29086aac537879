package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/refrouter/refrouter/internal/testutil"
	"github.com/refrouter/refrouter/node/localcluster"
)

// TestDatabaseOutageExactlyOnce stops a dedicated PostgreSQL server for a few seconds
// while a three-node cluster keeps acknowledging registrations (202, every one) and
// recording clicks, starts it again, and checks that every event arrives exactly once.
func TestDatabaseOutageExactlyOnce(t *testing.T) {
	srv := dedicatedServer(t)
	dsn := srv.DSN("postgres")
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) { o.DSN = dsn })
	a := clusterAPI(t, lc)
	const camp = "e2e-outage"
	a.createCampaign(0, campaignBody(camp, 1000))
	inviters := []string{"oli", "pat", "quy"}
	var codes []string
	for i, inv := range inviters {
		codes = append(codes, a.link(i, camp, inv))
	}
	a.waitInviters(camp, len(inviters))
	pool := openPool(t, dsn)
	clicks := 0
	clickAll := func() {
		for i, c := range codes {
			a.click(i, c, clientIPs[i].ip)
			clicks++
		}
	}

	tr := newTraffic(a, camp, inviters, codes)
	tr.run([]int{0, 1, 2}, 10*time.Millisecond)
	tr.waitAcks(t, 30, 0, 0, "traffic before the outage")
	clickAll()
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	down := time.Now()
	stopped, _, _ := tr.counts(0)
	// Keep the database down at least 3 s and until 60 more registrations were acknowledged.
	testutil.WaitFor(t, 60*time.Second, "registrations acknowledged during the outage", func() bool {
		n, _, _ := tr.counts(0)
		return time.Since(down) > 3*time.Second && n >= stopped+60
	})
	clickAll()
	during, _, _ := tr.counts(0)
	var fails int
	tr.mu.Lock()
	for _, f := range tr.fails {
		fails += f
	}
	tr.mu.Unlock()
	if fails != 0 {
		t.Fatalf("%d registrations failed while the database was down; the API must keep answering", fails)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start postgres again: %v", err)
	}
	t.Logf("database down %v; %d registrations acknowledged meanwhile", time.Since(down).Round(time.Millisecond), during-stopped)
	tr.waitAcks(t, during+30, 0, 0, "traffic after the outage")
	clickAll()
	acks := tr.finish(t)
	for id, ack := range acks {
		ack.Decision = a.decision(indexOf(a.names, ack.Node), id)
	}
	waitReplicated(t, pool, camp, acks, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d clicks replicated", clicks), func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM clicks WHERE campaign = $1", camp).Scan(&n) == nil && n >= clicks
	})
	var n, ids, links int
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM clicks WHERE campaign = $1", camp).Scan(&n, &ids); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM links WHERE campaign = $1", camp).Scan(&links); err != nil {
		t.Fatal(err)
	}
	if n != clicks || ids != clicks || links != len(codes) {
		t.Fatalf("clicks %d rows %d ids, want %d; links %d, want %d", n, ids, clicks, links, len(codes))
	}
}

// TestStartDuringDatabaseOutage starts a three-node cluster while its database is
// down: the nodes start, acknowledge a registration, and replicate it (migrating
// the schema first) once the database comes up.
func TestStartDuringDatabaseOutage(t *testing.T) {
	srv := dedicatedServer(t)
	dsn := srv.DSN("postgres")
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	lc := testutil.StartCluster(t, nil, func(o *localcluster.Options) { o.DSN = dsn })
	a := clusterAPI(t, lc)
	const camp = "e2e-start-outage"
	a.createCampaign(0, campaignBody(camp, 1000))
	code := a.link(0, camp, "rae")
	a.waitInviters(camp, 1)
	id, _ := a.register(1, map[string]string{"campaign": camp, "code": code, "invitee": "sam"}, "")
	if err := srv.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	pool := openPool(t, dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	testutil.WaitFor(t, 90*time.Second, "the registration acknowledged during the outage replicated", func() bool {
		var n int
		return pool.QueryRow(ctx, "SELECT count(*) FROM registrations WHERE registration_id = $1", id).Scan(&n) == nil && n == 1
	})
}
