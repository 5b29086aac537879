package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/refrouter/refrouter/attribution/migrate"
	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/refrouter/refrouter/attribution/replicate"
)

// openReplication connects to the database, applies (migrate: true) or
// checks the schema and builds the replicator. A bad DSN or a database
// without the schema is a clear error at start, not a silent backlog.
func (n *Node) openReplication(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("database: bad dsn: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return fmt.Errorf("database: connect: %w", err)
	}
	if n.cfg.Migrate {
		if err := migrate.Migrate(ctx, pool, n.migrateOptions()); err != nil {
			pool.Close()
			return fmt.Errorf("database: migrate: %w", err)
		}
	}
	n.outbox.Register(replicate.DefaultCursor)
	r, err := replicate.New(replicate.Config{Logger: n.log, Registerer: n.reg}, n.outbox, pool)
	if err != nil {
		pool.Close()
		return fmt.Errorf("database: %w", err)
	}
	if err := r.Check(ctx); err != nil {
		pool.Close()
		return fmt.Errorf("database: %w (run `refrouter migrate --dsn ...` or set migrate: true)", err)
	}
	n.pool, n.replicator = pool, r
	return nil
}

// migrateOptions maps the configured node regions to database regions; the
// node's own region's database region is the primary one.
func (n *Node) migrateOptions() migrate.Options {
	o := migrate.Options{RegionMap: n.cfg.DBRegion, Logger: n.log}
	seen := map[string]bool{}
	if r, ok := n.cfg.DBRegion[n.cfg.Region]; ok {
		o.Regions, seen[r] = append(o.Regions, r), true
	}
	var rest []string
	for _, r := range n.cfg.DBRegion {
		if !seen[r] {
			rest, seen[r] = append(rest, r), true
		}
	}
	sort.Strings(rest)
	o.Regions = append(o.Regions, rest...)
	return o
}

// runReplicator runs the replicator until ctx ends, restarting it with a
// backoff when it stops on an error (a database outage at start, say); the
// outbox keeps everything meanwhile.
func (n *Node) runReplicator(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := n.replicator.Run(ctx)
		if err == nil || errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return
		}
		n.log.Warn("replicator stopped; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// minCursor is the lowest cursor of the outbox's consumers: records below it
// are consumed by every one of them.
func minCursor(o *outbox.Outbox, replicating bool) uint64 {
	low := o.Cursor(cursorSubmitter)
	if replicating {
		low = min(low, o.Cursor(replicate.DefaultCursor))
	}
	return low
}
