package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/refrouter/refrouter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestMigrateIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := newPool(t)
	core, err := Core()
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		if err := Migrate(ctx, pool, Options{Logger: quiet()}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(core) {
			t.Fatalf("run %d: %d migrations recorded (%v), want %d", run, n, err, len(core))
		}
	}
	for _, table := range coreTables(t) {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatalf("table %s: %v", table, err)
		}
	}
	// The natural keys make replays no-ops.
	for i := 0; i < 2; i++ {
		if _, err := pool.Exec(ctx, `INSERT INTO grants (id, registration_id, at, node, region, campaign, user_id, role, value)
			VALUES ('g-r1-inviter', 'r1', now(), 'n', 'r', 'c', 'u1', 'inviter', 10) ON CONFLICT DO NOTHING`); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM grants").Scan(&n); err != nil || n != 1 {
		t.Fatalf("grants after a replayed insert: %d, %v", n, err)
	}
	if crdb, err := IsCockroach(ctx, pool); err != nil || crdb {
		t.Fatalf("IsCockroach on PostgreSQL = %v, %v", crdb, err)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := newPool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- Migrate(ctx, pool, Options{Logger: quiet()}) }()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"empty", Options{}, false},
		{"good", sampleOptions(), false},
		{"bad region", Options{Regions: []string{`us"; DROP`}}, true},
		{"unmapped target", Options{Regions: []string{"us-east4"}, RegionMap: map[string]string{"eu": "europe-west3"}}, true},
		{"bad node region", Options{Regions: []string{"us-east4"}, RegionMap: map[string]string{"E U": "us-east4"}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrOptions)) {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func sampleOptions() Options {
	return Options{
		Regions:   []string{"asia-east1", "europe-west3", "us-east4"},
		RegionMap: map[string]string{"ap-east": "asia-east1", "eu-central": "europe-west3", "us-east": "us-east4"},
	}
}

var createTableRE = regexp.MustCompile(`(?i)CREATE TABLE IF NOT EXISTS (\w+)`)

func coreTables(t *testing.T) []string {
	t.Helper()
	core, err := Core()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range core {
		for _, g := range createTableRE.FindAllStringSubmatch(m.SQL, -1) {
			out = append(out, g[1])
		}
	}
	if len(out) < 6 {
		t.Fatalf("core creates only %v", out)
	}
	return out
}

// TestOverlayWellFormed checks every rendered CockroachDB overlay statement with checkOverlay,
// since no CockroachDB server or parser is available here.
func TestOverlayWellFormed(t *testing.T) {
	opts := sampleOptions()
	ms, err := Overlay(opts, "refrouter")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no overlay migrations")
	}
	core, _ := Core()
	for _, m := range ms {
		if m.Version < 1000 || m.Version <= core[len(core)-1].Version {
			t.Errorf("overlay %s has version %d, want >= 1000", m.Name, m.Version)
		}
		stmts := Statements(m.SQL)
		if len(stmts) == 0 {
			t.Errorf("overlay %s has no statements", m.Name)
		}
		for _, s := range stmts {
			if err := checkOverlay(s, coreTables(t), opts.Regions, `"refrouter"`); err != nil {
				t.Errorf("%s: %q: %v", m.Name, s, err)
			}
		}
	}
	// Every event table is made REGIONAL BY ROW, and campaigns GLOBAL.
	all := ""
	for _, m := range ms {
		all += m.SQL
	}
	for _, table := range coreTables(t) {
		want := "ALTER TABLE " + table + " SET LOCALITY REGIONAL BY ROW AS crdb_region"
		if table == "campaigns" {
			want = "ALTER TABLE campaigns SET LOCALITY GLOBAL"
		}
		if !strings.Contains(all, want) {
			t.Errorf("overlay lacks %q", want)
		}
	}
}

func TestCheckOverlayCatchesMistakes(t *testing.T) {
	tables := []string{"clicks", "campaigns"}
	regions := []string{"us-east4", "europe-west3"}
	tests := []struct {
		name string
		stmt string
	}{
		{"placeholder left", `ALTER DATABASE "refrouter" SET PRIMARY REGION {{PRIMARY_REGION}}`},
		{"unquoted region", `ALTER DATABASE "refrouter" SET PRIMARY REGION us-east4`},
		{"unknown region", `ALTER DATABASE "refrouter" ADD REGION "mars-1"`},
		{"unknown table", `ALTER TABLE clickz SET LOCALITY GLOBAL`},
		{"wrong database", `ALTER DATABASE "other" SET PRIMARY REGION "us-east4"`},
		{"unbalanced parens", `ALTER TABLE clicks ADD COLUMN crdb_region crdb_internal_region AS ((CASE region END) STORED`},
		{"unterminated quote", `ALTER TABLE clicks ADD COLUMN x TEXT DEFAULT 'abc`},
		{"typo keyword", `ALTER TABLE clicks SET LOCALITY REGOINAL BY ROW`},
		{"not allowed statement", `DROP TABLE clicks`},
		{"case region unknown", `ALTER TABLE clicks ADD COLUMN crdb_region crdb_internal_region NOT NULL AS (CASE region WHEN 'x' THEN 'mars-1'::crdb_internal_region END) STORED`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkOverlay(tc.stmt, tables, regions, `"refrouter"`); err == nil {
				t.Fatalf("checkOverlay accepted %q", tc.stmt)
			}
		})
	}
	ok := `ALTER TABLE clicks ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT NULL AS (CASE region WHEN 'a' THEN 'us-east4'::crdb_internal_region ELSE 'europe-west3'::crdb_internal_region END) STORED`
	if err := checkOverlay(ok, tables, regions, `"refrouter"`); err != nil {
		t.Fatalf("checkOverlay rejected a good statement: %v", err)
	}
}

// overlayWords is the allowed set of bare words in overlay statements.
var overlayWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`ALTER DATABASE TABLE SET PRIMARY REGION ADD IF NOT EXISTS LOCALITY GLOBAL
		REGIONAL BY ROW AS COLUMN NULL STORED CASE WHEN THEN ELSE END crdb_internal_region crdb_region region`) {
		overlayWords[strings.ToUpper(w)] = true
	}
}

type token struct {
	kind byte // 'w' word, 's' 'string', 'i' "identifier", 'p' punctuation
	text string
}

func tokenize(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			i++
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c quote at %d", c, i)
			}
			kind := byte('s')
			if c == '"' {
				kind = 'i'
			}
			out = append(out, token{kind, s[i+1 : i+1+j]})
			i += j + 2
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			out = append(out, token{'w', s[i:j]})
			i = j
		case strings.HasPrefix(s[i:], "::"):
			out = append(out, token{'p', "::"})
			i += 2
		case c == '(' || c == ')' || c == ',':
			out = append(out, token{'p', string(c)})
			i++
		default:
			return nil, fmt.Errorf("unexpected character %q at %d", c, i)
		}
	}
	return out, nil
}

// checkOverlay is our stand-in for a CockroachDB parser: it checks one statement's tokens,
// parentheses, keywords, quoting of region names, and the tables and database it names.
func checkOverlay(stmt string, tables, regions []string, dbQuoted string) error {
	if strings.Contains(stmt, "{{") || strings.Contains(stmt, "}}") {
		return errors.New("unfilled template placeholder")
	}
	toks, err := tokenize(stmt)
	if err != nil {
		return err
	}
	isTable := map[string]bool{}
	for _, t := range tables {
		isTable[t] = true
	}
	isRegion := map[string]bool{}
	for _, r := range regions {
		isRegion[r] = true
	}
	depth := 0
	for _, t := range toks {
		if t.text == "(" && t.kind == 'p' {
			depth++
		}
		if t.text == ")" && t.kind == 'p' {
			if depth--; depth < 0 {
				return errors.New("unbalanced ')'")
			}
		}
	}
	if depth != 0 {
		return errors.New("unbalanced '('")
	}
	if len(toks) < 3 || !strings.EqualFold(toks[0].text, "ALTER") {
		return errors.New("statement is not ALTER DATABASE or ALTER TABLE")
	}
	switch strings.ToUpper(toks[1].text) {
	case "DATABASE":
		if toks[2].kind != 'i' || `"`+toks[2].text+`"` != dbQuoted {
			return fmt.Errorf("database %q, want %s", toks[2].text, dbQuoted)
		}
	case "TABLE":
		if toks[2].kind != 'w' || !isTable[toks[2].text] {
			return fmt.Errorf("table %q is not in the core schema", toks[2].text)
		}
	default:
		return fmt.Errorf("statement ALTER %s not allowed", toks[1].text)
	}
	for i, t := range toks {
		if i == 2 {
			continue
		}
		if t.kind == 'w' && !overlayWords[strings.ToUpper(t.text)] {
			if i >= 4 && strings.EqualFold(toks[i-1].text, "COLUMN") || i >= 5 && strings.EqualFold(toks[i-1].text, "EXISTS") {
				continue // a column name
			}
			return fmt.Errorf("unexpected word %q", t.text)
		}
		if t.kind == 'w' && strings.EqualFold(t.text, "REGION") && i+1 < len(toks) && strings.EqualFold(toks[i-1].text, "ADD") ||
			strings.EqualFold(t.text, "REGION") && i > 0 && strings.EqualFold(toks[i-1].text, "PRIMARY") {
			j := i + 1
			for j < len(toks) && toks[j].kind == 'w' && (strings.EqualFold(toks[j].text, "IF") || strings.EqualFold(toks[j].text, "NOT") || strings.EqualFold(toks[j].text, "EXISTS")) {
				j++
			}
			if j >= len(toks) || toks[j].kind != 'i' || !isRegion[toks[j].text] {
				return fmt.Errorf("region after %q must be a quoted configured region", t.text)
			}
		}
		if t.kind == 'w' && (strings.EqualFold(t.text, "THEN") || strings.EqualFold(t.text, "ELSE")) {
			if i+1 >= len(toks) || toks[i+1].kind != 's' || !isRegion[toks[i+1].text] {
				return fmt.Errorf("CASE result after %s must be a quoted configured region", t.text)
			}
		}
	}
	return nil
}

func FuzzStatements(f *testing.F) {
	f.Add("SELECT 1; SELECT ';' -- x;\n; ")
	f.Add(`ALTER TABLE "a;b" SET x = 'y;z';`)
	f.Fuzz(func(t *testing.T, sql string) {
		for _, s := range Statements(sql) {
			if strings.TrimSpace(s) != s || s == "" {
				t.Fatalf("statement %q not trimmed or empty", s)
			}
			if got := Statements(s); len(got) > 1 {
				t.Fatalf("statement %q splits again into %q", s, got)
			}
		}
	})
}
