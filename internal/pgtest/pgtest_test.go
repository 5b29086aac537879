package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestNewDBIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := NewDB(t), NewDB(t)
	if a == b {
		t.Fatalf("NewDB returned the same DSN twice: %s", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (id int primary key); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := ca.QueryRow(ctx, "SELECT count(*) FROM x").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count in a: %d, %v", n, err)
	}
	if _, err := cb.Exec(ctx, "SELECT count(*) FROM x"); err == nil {
		t.Fatal("table of database a visible in database b")
	}
}

func TestStopStartKeepsPortAndData(t *testing.T) {
	ctx := context.Background()
	srv := Shared(t)
	dsn := NewDB(t)
	c := connect(t, dsn)
	if _, err := c.Exec(ctx, "CREATE TABLE y (v text); INSERT INTO y VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	port := srv.Port()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c2, err := pgx.Connect(cctx, dsn); err == nil {
		c2.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if srv.Port() != port {
		t.Fatalf("port changed %d -> %d", port, srv.Port())
	}
	var v string
	if err := connect(t, dsn).QueryRow(ctx, "SELECT v FROM y").Scan(&v); err != nil || v != "kept" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
}

func TestDSNOverride(t *testing.T) {
	t.Setenv(EnvDSN, "postgres://example.invalid/db")
	if got := DSN(t); got != "postgres://example.invalid/db" {
		t.Fatalf("DSN with %s set = %q", EnvDSN, got)
	}
}
