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
	"github.com/refrouter/refrouter/config"
)

// openReplication builds the replicator for dsn. A DSN that does not parse
// is an error at start. A database that cannot be reached is not: the node
// starts, keeps attribution in its outbox (the database is on no request
// path) and runReplicator connects, migrates (migrate: true) or checks the
// schema, and replicates once it can. A reachable database without the
// schema is an error at start, as it will not fix itself.
func (n *Node) openReplication(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("database: bad dsn: %s", config.DSNError(err))
	}
	n.outbox.Register(replicate.DefaultCursor)
	r, err := replicate.New(replicate.Config{Logger: n.log, Registerer: n.reg}, n.outbox, pool)
	if err != nil {
		pool.Close()
		return fmt.Errorf("database: %w", err)
	}
	n.pool, n.replicator = pool, r
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	err = pool.Ping(pctx)
	pcancel()
	if err != nil {
		n.log.Warn("database unreachable at start; the outbox keeps attribution and the replicator retries", "err", err)
		return nil
	}
	if err := n.prepareDatabase(ctx); err != nil {
		n.pool, n.replicator = nil, nil
		pool.Close()
		return err
	}
	n.dbReady = true
	return nil
}

// prepareDatabase migrates (migrate: true) or checks the schema.
func (n *Node) prepareDatabase(ctx context.Context) error {
	if n.cfg.Migrate {
		if err := migrate.Migrate(ctx, n.pool, n.migrateOptions()); err != nil {
			return fmt.Errorf("database: migrate: %w", err)
		}
	}
	if err := n.replicator.Check(ctx); err != nil {
		return fmt.Errorf("database: %w (run `refrouter migrate --dsn ...` or set migrate: true)", err)
	}
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
		var err error
		if !n.dbReady {
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			if err = n.pool.Ping(pctx); err == nil {
				err = n.prepareDatabase(pctx)
			}
			cancel()
			if err == nil {
				n.dbReady = true
				n.log.Info("database reachable; replicating")
			}
		}
		if err == nil {
			err = n.replicator.Run(ctx)
		}
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

// minCursor is the lowest cursor of the outbox's consumers, the persisted
// ones included (the outbox keeps what any of them has not passed): records
// below it are consumed by every one of them.
func minCursor(o *outbox.Outbox, replicating bool) uint64 {
	low := o.Cursor(cursorSubmitter)
	if replicating {
		low = min(low, o.Cursor(replicate.DefaultCursor))
	}
	for _, c := range o.Cursors() {
		low = min(low, c)
	}
	return low
}
