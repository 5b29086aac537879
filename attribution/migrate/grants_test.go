package migrate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// insertTaskGrant inserts grant n of registration r1, of role "task", as the replicator does.
func insertTaskGrant(ctx context.Context, pool *pgxpool.Pool, n int) error {
	_, err := pool.Exec(ctx, `INSERT INTO grants (id, registration_id, at, node, region, campaign, user_id, role, value)
		VALUES ($1, 'r1', now(), 'n', 'r', 'c', 'u1', 'task', 5) ON CONFLICT (id) DO NOTHING`, fmt.Sprintf("g-r1-7-%d", n))
	return err
}

func countGrants(t *testing.T, ctx context.Context, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM grants WHERE registration_id = 'r1'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSeveralGrantsOfOneRole: the ledger gives a registration one grant of role "task" per
// task it unlocks, so (registration_id, role) is not unique; the event id is the key. Both on
// a new database and on one migrated by an earlier build (core version 1 only, with rows).
func TestSeveralGrantsOfOneRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	core, err := Core()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("new database", func(t *testing.T) {
		pool := newPool(t)
		if err := Migrate(ctx, pool, Options{Logger: quiet()}); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 3; n++ {
			if err := insertTaskGrant(ctx, pool, n); err != nil {
				t.Fatalf("grant %d: %v", n, err)
			}
		}
		if err := insertTaskGrant(ctx, pool, 0); err != nil { // a replay
			t.Fatalf("replayed grant: %v", err)
		}
		if got := countGrants(t, ctx, pool); got != 3 {
			t.Fatalf("%d task grants of r1, want 3", got)
		}
	})

	t.Run("upgrade from version 1", func(t *testing.T) {
		pool := newPool(t)
		if core[0].Version != 1 {
			t.Fatalf("first core migration is %s", core[0].Name)
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
				version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", core[0].Version, core[0].Name); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, core[0].SQL)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := insertTaskGrant(ctx, pool, 0); err != nil {
			t.Fatal(err)
		}
		if err := Migrate(ctx, pool, Options{Logger: quiet()}); err != nil {
			t.Fatal(err)
		}
		for n := 1; n < 3; n++ {
			if err := insertTaskGrant(ctx, pool, n); err != nil {
				t.Fatalf("grant %d after the upgrade: %v", n, err)
			}
		}
		if got := countGrants(t, ctx, pool); got != 3 {
			t.Fatalf("%d task grants of r1 after the upgrade, want 3", got)
		}
	})
}

// TestCoreCockroachVariants: a CockroachDB variant of a core migration replaces the
// migration of the same version and name, and nothing else.
func TestCoreCockroachVariants(t *testing.T) {
	pg, err := Core()
	if err != nil {
		t.Fatal(err)
	}
	crdb, err := CoreCockroach()
	if err != nil {
		t.Fatal(err)
	}
	if len(pg) != len(crdb) {
		t.Fatalf("%d core migrations, %d for CockroachDB", len(pg), len(crdb))
	}
	variants := 0
	for i := range pg {
		if pg[i].Version != crdb[i].Version || pg[i].Name != crdb[i].Name {
			t.Fatalf("migration %d: %s vs %s", i, pg[i].Name, crdb[i].Name)
		}
		if pg[i].SQL != crdb[i].SQL {
			variants++
			if len(Statements(crdb[i].SQL)) == 0 {
				t.Fatalf("CockroachDB variant of %s has no statement", crdb[i].Name)
			}
		}
	}
	if variants == 0 {
		t.Fatal("no CockroachDB variant found (dropping the grants unique constraint needs one)")
	}
}
