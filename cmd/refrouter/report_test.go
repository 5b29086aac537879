package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/refrouter/refrouter/attribution/migrate"
	"github.com/refrouter/refrouter/attribution/report"
	"github.com/refrouter/refrouter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runCLI runs the built binary and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// TestMigrateTwiceAndReport: `refrouter migrate --dsn` applies the schema and is a no-op
// the second time; `refrouter report` prints the funnel of rows written into it.
func TestMigrateTwiceAndReport(t *testing.T) {
	dsn := pgtest.NewDB(t)
	for i := range 2 {
		out, errOut, code := runCLI(t, "migrate", "--dsn", dsn)
		if code != 0 || !strings.Contains(out, "schema up to date") {
			t.Fatalf("migrate run %d: exit %d, stdout %q, stderr %q", i+1, code, out, errOut)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var versions, tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()
		AND table_name IN ('campaigns','links','clicks','registrations','decisions','grants')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	core, err := migrate.Core()
	if err != nil {
		t.Fatal(err)
	}
	if want := len(core); versions != want || tables != 6 {
		t.Fatalf("after two migrations: %d schema_migrations rows (want %d, the core's), %d of 6 tables", versions, want, tables)
	}

	// A small funnel: 5 clicks (3 in ap-east from HK, 2 in eu-central from DE),
	// 3 registrations, 2 rewarded (by amy) and 1 capped (by ben).
	at := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("INSERT INTO campaigns (id, first_seen) VALUES ('rep', $1), ('other', $1)", at)
	clicks := []struct{ id, region, country, inviter string }{
		{"c1", "ap-east", "HK", "amy"}, {"c2", "ap-east", "HK", "amy"}, {"c3", "ap-east", "HK", "ben"},
		{"c4", "eu-central", "DE", "amy"}, {"c5", "eu-central", "DE", "ben"},
	}
	for _, c := range clicks {
		exec(`INSERT INTO clicks (id, at, node, region, campaign, code, inviter, ip, country, ua)
			VALUES ($1, $2, 'n', $3, 'rep', 'CODE', $4, '192.0.2.1', $5, 'ua')`, c.id, at, c.region, c.inviter, c.country)
	}
	exec(`INSERT INTO clicks (id, at, node, region, campaign, code, inviter, ip, country, ua)
		VALUES ('x1', $1, 'n', 'ap-east', 'other', 'CODE', 'amy', '', 'HK', 'ua')`, at)
	regs := []struct{ id, region, country, inviter, invitee, status string }{
		{"r1", "ap-east", "HK", "amy", "i1", "rewarded"},
		{"r2", "eu-central", "DE", "amy", "i2", "rewarded"},
		{"r3", "ap-east", "HK", "ben", "i3", "capped"},
	}
	for _, r := range regs {
		exec(`INSERT INTO registrations (id, registration_id, at, node, region, campaign, inviter, invitee, device, ip, country)
			VALUES ($1, $1, $2, 'n', $3, 'rep', $4, $5, '', '', $6)`, r.id, at, r.region, r.inviter, r.invitee, r.country)
		exec(`INSERT INTO decisions (id, registration_id, at, node, region, campaign, inviter, invitee, status, reason)
			VALUES ('d-' || $1::text, $1, $2, 'n', $3, 'rep', $4, $5, $6, '')`, r.id, at, r.region, r.inviter, r.invitee, r.status)
		if r.status == "rewarded" {
			exec(`INSERT INTO grants (id, registration_id, at, node, region, campaign, user_id, role, value)
				VALUES ('g-' || $1::text || '-i', $1, $2, 'n', $3, 'rep', $4, 'inviter', 10),
				       ('g-' || $1::text || '-e', $1, $2, 'n', $3, 'rep', $5, 'invitee', 5)`, r.id, at, r.region, r.inviter, r.invitee)
		}
	}

	out, errOut, code := runCLI(t, "report", "--dsn", dsn, "--campaign", "rep")
	if code != 0 {
		t.Fatalf("report: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"campaign rep",
		"funnel: 5 clicks -> 3 registrations (60.0%) -> 2 rewarded (66.7%)",
		"ap-east     3       2              1",
		"eu-central  2       1              1",
		"1. amy        3       2              2         20",
		"2. ben        2       1              0         0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report output lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = runCLI(t, "report", "--dsn", dsn, "--campaign", "rep", "--json")
	if code != 0 {
		t.Fatalf("report --json: exit %d, stderr %q", code, errOut)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report --json: %v: %s", err, out)
	}
	if rep.Total != (report.Row{Clicks: 5, Registrations: 3, Rewarded: 2}) || len(rep.ByRegion) != 2 || len(rep.ByCountry) != 2 ||
		len(rep.TopInviters) != 2 || rep.TopInviters[0] != (report.Inviter{User: "amy", Clicks: 3, Registrations: 2, Rewarded: 2, Value: 20}) {
		t.Fatalf("report --json: %+v", rep)
	}
	if hk := rep.ByCountry[0]; hk != (report.Row{Key: "HK", Clicks: 3, Registrations: 2, Rewarded: 1}) {
		t.Fatalf("report --json by country: %+v", rep.ByCountry)
	}
}

// TestReportAndMigrateErrors: a bad DSN, an unreachable database, an unknown campaign or a
// missing flag exit non-zero with one line on stderr (I7).
func TestReportAndMigrateErrors(t *testing.T) {
	dsn := pgtest.NewDB(t)
	if _, errOut, code := runCLI(t, "migrate", "--dsn", dsn); code != 0 {
		t.Fatalf("migrate: %s", errOut)
	}
	unreachable := "postgres://postgres@127.0.0.1:1/nodb?sslmode=disable&connect_timeout=5"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"malformed dsn", []string{"report", "--dsn", "postgres://bad:dsn:here:/x?sslmode=nope", "--campaign", "x"}, "dsn"},
		{"unreachable database", []string{"report", "--dsn", unreachable, "--campaign", "x"}, "connect"},
		{"migrate unreachable", []string{"migrate", "--dsn", unreachable}, "connect"},
		{"migrate malformed dsn", []string{"migrate", "--dsn", "::not a dsn::"}, "dsn"},
		{"unknown campaign", []string{"report", "--dsn", dsn, "--campaign", "nope"}, "not found"},
		{"no campaign", []string{"report", "--dsn", dsn}, "--campaign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, tt.args...)
			if code == 0 {
				t.Fatalf("exit 0; stdout %q", out)
			}
			msg := strings.TrimRight(errOut, "\n")
			if msg == "" || strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Fatalf("stderr %q: want one line mentioning %q", errOut, tt.want)
			}
		})
	}
}
