// Package migrate holds refrouter's attribution database schema as numbered, embedded SQL
// files and applies them in order, recording each in a schema_migrations table, so that
// Migrate is idempotent and safe to run from several nodes.
//
// The portable core (core/*.sql) runs on PostgreSQL and CockroachDB. Where a core migration
// cannot be written for both, core_crdb/ holds its CockroachDB variant: a file with the same
// version and name, applied instead of the core file when the server reports CockroachDB
// (the version is recorded alike, so a database never applies both). The CockroachDB
// overlay (overlay_crdb/*.sql: database regions, a GLOBAL campaigns table, REGIONAL BY ROW
// event tables) is rendered from Options and applied only when the server reports
// CockroachDB.
package migrate

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed core/*.sql core_crdb/*.sql overlay_crdb/*.sql
var files embed.FS

// ErrOptions is returned (wrapped) for invalid Options.
var ErrOptions = errors.New("migrate: invalid options")

// Options configure Migrate. Only the CockroachDB overlay uses the region fields.
type Options struct {
	// Database is the CockroachDB database to make multi-region; "" = current_database().
	Database string
	// Regions are the database regions; the first is the primary region. With none, the
	// overlay is skipped (a single-region CockroachDB).
	Regions []string
	// RegionMap maps a node's region (Event.Region) to a database region. Unmapped node
	// regions go to the primary region.
	RegionMap map[string]string
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

// Migration is one numbered SQL file.
type Migration struct {
	Version int    // from the file name prefix; core < 1000 <= overlay
	Name    string // file name
	SQL     string // rendered text
}

var regionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate checks the region names and the region map.
func (o Options) Validate() error {
	known := map[string]bool{}
	for _, r := range o.Regions {
		if !regionRE.MatchString(r) {
			return fmt.Errorf("region %q: %w", r, ErrOptions)
		}
		known[r] = true
	}
	for node, db := range o.RegionMap {
		if !regionRE.MatchString(node) {
			return fmt.Errorf("node region %q: %w", node, ErrOptions)
		}
		if !known[db] {
			return fmt.Errorf("node region %q maps to %q, not one of the regions %v: %w", node, db, o.Regions, ErrOptions)
		}
	}
	return nil
}

// Core returns the core migrations in order, as applied on PostgreSQL.
func Core() ([]Migration, error) { return load("core", nil) }

// CoreCockroach returns the core migrations in order, as applied on CockroachDB: Core with
// each migration that has a variant in core_crdb/ replaced by it.
func CoreCockroach() ([]Migration, error) {
	core, err := Core()
	if err != nil {
		return nil, err
	}
	variants, err := load("core_crdb", nil)
	if err != nil {
		return nil, err
	}
	for _, v := range variants {
		i := sort.Search(len(core), func(i int) bool { return core[i].Version >= v.Version })
		if i == len(core) || core[i].Version != v.Version || core[i].Name != v.Name {
			return nil, fmt.Errorf("cockroachdb variant %q replaces no core migration of the same version and name", v.Name)
		}
		core[i].SQL = v.SQL
	}
	return core, nil
}

// Overlay returns the CockroachDB overlay migrations in order, rendered for opts and database db.
func Overlay(opts Options, db string) ([]Migration, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(opts.Regions) == 0 {
		return nil, fmt.Errorf("overlay needs at least one region: %w", ErrOptions)
	}
	dbq := pgx.Identifier{db}.Sanitize()
	var add strings.Builder
	for _, r := range opts.Regions[1:] {
		fmt.Fprintf(&add, "ALTER DATABASE %s ADD REGION IF NOT EXISTS %q;\n", dbq, r)
	}
	var cs strings.Builder
	cs.WriteString("CASE region")
	nodes := make([]string, 0, len(opts.RegionMap))
	for n := range opts.RegionMap {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		fmt.Fprintf(&cs, " WHEN '%s' THEN '%s'::crdb_internal_region", n, opts.RegionMap[n])
	}
	fmt.Fprintf(&cs, " ELSE '%s'::crdb_internal_region END", opts.Regions[0])
	vars := map[string]string{
		"{{DATABASE}}":       dbq,
		"{{PRIMARY_REGION}}": strconv.Quote(opts.Regions[0]),
		"{{ADD_REGIONS}}":    strings.TrimSuffix(add.String(), "\n"),
		"{{REGION_CASE}}":    cs.String(),
	}
	return load("overlay_crdb", vars)
}

func load(dir string, vars map[string]string) ([]Migration, error) {
	names, err := fs.Glob(files, dir+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations %s: %w", dir, err)
	}
	var ms []Migration
	for _, p := range names {
		name := path.Base(p)
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %q: name must start with a number and '_'", p)
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", p, err)
		}
		sql := string(b)
		for k, val := range vars {
			sql = strings.ReplaceAll(sql, k, val)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: sql})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %q and %q share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// IsCockroach reports whether the server behind pool is CockroachDB.
func IsCockroach(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var v string
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return false, fmt.Errorf("select version: %w", err)
	}
	return strings.Contains(v, "CockroachDB"), nil
}

// Migrate applies the migrations not yet recorded in schema_migrations, in order: the core
// (CoreCockroach's on CockroachDB), then, on CockroachDB with Regions set, the overlay. Each core migration runs in one
// transaction with its schema_migrations row, so concurrent runs apply it once. Overlay
// statements (multi-region DDL, which CockroachDB runs outside explicit transactions) run one
// by one and are written to be idempotent.
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	crdb, err := IsCockroach(ctx, pool)
	if err != nil {
		return err
	}
	core, err := Core()
	if crdb {
		core, err = CoreCockroach()
	}
	if err != nil {
		return err
	}
	for _, m := range core {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", m.Version, m.Name)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return nil // applied before
			}
			log.Info("applying migration", "version", m.Version, "name", m.Name)
			_, err = tx.Exec(ctx, m.SQL)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	if !crdb {
		return nil
	}
	if len(opts.Regions) == 0 {
		log.Warn("cockroachdb without configured regions: multi-region overlay skipped")
		return nil
	}
	db := opts.Database
	if db == "" {
		if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			return fmt.Errorf("select current_database: %w", err)
		}
	}
	overlay, err := Overlay(opts, db)
	if err != nil {
		return err
	}
	for _, m := range overlay {
		var done bool
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", m.Version).Scan(&done); err != nil {
			return fmt.Errorf("check migration %s: %w", m.Name, err)
		}
		if done {
			continue
		}
		log.Info("applying cockroachdb overlay migration", "version", m.Version, "name", m.Name)
		for _, stmt := range Statements(m.SQL) {
			if _, err := pool.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("apply migration %s: %q: %w", m.Name, stmt, err)
			}
		}
		if _, err := pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING", m.Version, m.Name); err != nil {
			return fmt.Errorf("record migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// Statements splits SQL text into statements at semicolons outside quotes, dropping
// "--" comments and empty statements.
func Statements(sql string) []string {
	var out []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case quote != 0:
			cur.WriteByte(c)
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
			cur.WriteByte(c)
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			cur.WriteByte('\n')
		case c == ';':
			if s := strings.TrimSpace(cur.String()); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
