package report

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/refrouter/refrouter/attribution/migrate"
	"github.com/refrouter/refrouter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func seed(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrate.Migrate(ctx, pool, migrate.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `
INSERT INTO campaigns VALUES ('spring', now()), ('other', now());
INSERT INTO clicks (id, at, node, region, campaign, code, inviter, ip, country, ua) VALUES
 ('c1', now(), 'hk-1', 'ap-east', 'spring', 'x', 'u1', '', 'HK', ''),
 ('c2', now(), 'hk-1', 'ap-east', 'spring', 'x', 'u1', '', 'HK', ''),
 ('c3', now(), 'hk-1', 'ap-east', 'spring', 'x', 'u1', '', 'HK', ''),
 ('c4', now(), 'hk-1', 'ap-east', 'spring', 'y', 'u2', '', 'HK', ''),
 ('c5', now(), 'fra-1', 'eu-central', 'spring', 'y', 'u2', '', 'DE', ''),
 ('c6', now(), 'fra-1', 'eu-central', 'spring', 'y', 'u2', '', 'DE', ''),
 ('c7', now(), 'fra-1', 'eu-central', 'other', 'z', 'u9', '', 'DE', '');
INSERT INTO registrations (id, registration_id, at, node, region, campaign, inviter, invitee, device, ip, country) VALUES
 ('r1', 'r1', now(), 'hk-1', 'ap-east', 'spring', 'u1', 'v1', '', '', 'HK'),
 ('r2', 'r2', now(), 'hk-1', 'ap-east', 'spring', 'u1', 'v2', '', '', 'HK'),
 ('r3', 'r3', now(), 'fra-1', 'eu-central', 'spring', 'u2', 'v3', '', '', 'DE'),
 ('r9', 'r9', now(), 'fra-1', 'eu-central', 'other', 'u9', 'v9', '', '', 'DE');
INSERT INTO decisions (id, registration_id, at, node, region, campaign, inviter, invitee, status, reason) VALUES
 ('d-r1', 'r1', now(), 'hk-1', 'ap-east', 'spring', 'u1', 'v1', 'rewarded', ''),
 ('d-r2', 'r2', now(), 'hk-1', 'ap-east', 'spring', 'u1', 'v2', 'capped', ''),
 ('d-r3', 'r3', now(), 'fra-1', 'eu-central', 'spring', 'u2', 'v3', 'rewarded', ''),
 ('d-r9', 'r9', now(), 'fra-1', 'eu-central', 'other', 'u9', 'v9', 'rewarded', '');
INSERT INTO grants (id, registration_id, at, node, region, campaign, user_id, role, value) VALUES
 ('g-r1-inviter', 'r1', now(), 'hk-1', 'ap-east', 'spring', 'u1', 'inviter', 10),
 ('g-r1-invitee', 'r1', now(), 'hk-1', 'ap-east', 'spring', 'v1', 'invitee', 10),
 ('g-r3-inviter', 'r3', now(), 'fra-1', 'eu-central', 'spring', 'u2', 'inviter', 20),
 ('g-r3-task', 'r3', now(), 'fra-1', 'eu-central', 'spring', 'u2', 'task', 500),
 ('g-settle-team', 'settlement:spring', now(), 'fra-1', 'eu-central', 'spring', 'u1', 'team', 7),
 ('g-r1-u1-as-invitee', 'r8', now(), 'hk-1', 'ap-east', 'spring', 'u1', 'invitee', 1000),
 ('g-r9-inviter', 'r9', now(), 'fra-1', 'eu-central', 'other', 'u9', 'inviter', 99);`)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func TestFunnel(t *testing.T) {
	pool := seed(t)
	ctx := context.Background()
	rep, err := Funnel(ctx, pool, "spring")
	if err != nil {
		t.Fatal(err)
	}
	want := &Report{
		Campaign:  "spring",
		Total:     Row{Clicks: 6, Registrations: 3, Rewarded: 2},
		ByRegion:  []Row{{"ap-east", 4, 2, 1}, {"eu-central", 2, 1, 1}},
		ByCountry: []Row{{"HK", 4, 2, 1}, {"DE", 2, 1, 1}},
		TopInviters: []Inviter{
			{User: "u2", Clicks: 3, Registrations: 1, Rewarded: 1, Value: 520},
			{User: "u1", Clicks: 3, Registrations: 2, Rewarded: 1, Value: 17},
		},
	}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("Funnel:\n got %+v\nwant %+v", rep, want)
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"campaign spring", "6 clicks -> 3 registrations (50.0%) -> 2 rewarded (66.7%)",
		"ap-east", "eu-central", "HK", "1. u2", "2. u1"} {
		if !strings.Contains(out, s) {
			t.Errorf("report text lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "u9") {
		t.Errorf("report of spring shows the other campaign's inviter:\n%s", out)
	}
}

func TestFunnelErrors(t *testing.T) {
	pool := seed(t)
	tests := []struct {
		name     string
		campaign string
		is       error
	}{
		{"unknown campaign", "nope", ErrNotFound},
		{"empty campaign", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Funnel(context.Background(), pool, tc.campaign)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Funnel(%q) = %v, want %v", tc.campaign, err, tc.is)
			}
		})
	}
}

func TestWriteTextEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := (&Report{Campaign: "x"}).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "0 clicks -> 0 registrations (-) -> 0 rewarded (-)") {
		t.Fatalf("empty report:\n%s", b.String())
	}
}
