// Package report reads a campaign's attribution funnel from the database that the
// replicator fills: clicks, then registrations, then rewarded registrations, by region and
// by country, and the top inviters.
package report

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound is returned (wrapped) when the database has no events of the campaign.
var ErrNotFound = errors.New("report: campaign not found")

// TopN is the number of inviters in Report.TopInviters.
const TopN = 10

// Row is one line of the funnel. Rewarded counts registrations with a "rewarded" decision.
type Row struct {
	Key           string // region or country ("" when unknown)
	Clicks        int64
	Registrations int64
	Rewarded      int64
}

// Inviter is one of the top inviters.
type Inviter struct {
	User          string
	Clicks        int64
	Registrations int64
	Rewarded      int64
	Value         int64 // sum of the inviter's grants as an inviter (ladder, tasks, team award, lottery prizes), minor units
}

// Report is a campaign's funnel. It is a plain value owned by the caller.
type Report struct {
	Campaign    string
	Total       Row // Key is empty
	ByRegion    []Row
	ByCountry   []Row
	TopInviters []Inviter
}

// Funnel reads the funnel of campaign from pool. Regions are those of the recording nodes;
// countries those of the clients' IPs. It is safe for concurrent use (it only reads).
func Funnel(ctx context.Context, pool *pgxpool.Pool, campaign string) (*Report, error) {
	if campaign == "" {
		return nil, errors.New("report: empty campaign id")
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1)", campaign).Scan(&exists); err != nil {
		return nil, fmt.Errorf("report %q: %w", campaign, err)
	}
	if !exists {
		return nil, fmt.Errorf("campaign %q: %w", campaign, ErrNotFound)
	}
	rep := &Report{Campaign: campaign}
	var err error
	if rep.ByRegion, err = breakdown(ctx, pool, campaign, "region"); err != nil {
		return nil, err
	}
	if rep.ByCountry, err = breakdown(ctx, pool, campaign, "country"); err != nil {
		return nil, err
	}
	for _, r := range rep.ByRegion {
		rep.Total.Clicks += r.Clicks
		rep.Total.Registrations += r.Registrations
		rep.Total.Rewarded += r.Rewarded
	}
	if rep.TopInviters, err = topInviters(ctx, pool, campaign); err != nil {
		return nil, err
	}
	return rep, nil
}

// breakdown groups the funnel by col, which is "region" or "country" (never user input).
func breakdown(ctx context.Context, pool *pgxpool.Pool, campaign, col string) ([]Row, error) {
	q := fmt.Sprintf(`
WITH c AS (SELECT %[1]s AS k, count(*) AS n FROM clicks WHERE campaign = $1 GROUP BY %[1]s),
     r AS (SELECT %[1]s AS k, count(*) AS n FROM registrations WHERE campaign = $1 GROUP BY %[1]s),
     d AS (SELECT DISTINCT ON (registration_id) registration_id, status FROM decisions
            WHERE campaign = $1 ORDER BY registration_id, at DESC, id DESC),
     w AS (SELECT r.%[1]s AS k, count(*) AS n FROM registrations r
             JOIN d ON d.registration_id = r.registration_id
            WHERE r.campaign = $1 AND d.status = 'rewarded' GROUP BY r.%[1]s),
     keys AS (SELECT k FROM c UNION SELECT k FROM r)
SELECT keys.k, coalesce(c.n, 0), coalesce(r.n, 0), coalesce(w.n, 0)
  FROM keys LEFT JOIN c ON c.k = keys.k LEFT JOIN r ON r.k = keys.k LEFT JOIN w ON w.k = keys.k
 ORDER BY 2 DESC, 3 DESC, 1`, col)
	rows, err := pool.Query(ctx, q, campaign)
	if err != nil {
		return nil, fmt.Errorf("report %q by %s: %w", campaign, col, err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.Key, &r.Clicks, &r.Registrations, &r.Rewarded); err != nil {
			return nil, fmt.Errorf("report %q by %s: %w", campaign, col, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report %q by %s: %w", campaign, col, err)
	}
	return out, nil
}

func topInviters(ctx context.Context, pool *pgxpool.Pool, campaign string) ([]Inviter, error) {
	const q = `
WITH d AS (SELECT DISTINCT ON (registration_id) registration_id, status FROM decisions
            WHERE campaign = $1 ORDER BY registration_id, at DESC, id DESC),
     r AS (SELECT r.inviter, count(*) AS regs,
                  sum(CASE WHEN d.status = 'rewarded' THEN 1 ELSE 0 END) AS rewarded
             FROM registrations r LEFT JOIN d ON d.registration_id = r.registration_id
            WHERE r.campaign = $1 GROUP BY r.inviter),
     c AS (SELECT inviter, count(*) AS n FROM clicks WHERE campaign = $1 GROUP BY inviter),
     g AS (SELECT user_id, sum(value) AS v FROM grants WHERE campaign = $1 AND role <> 'invitee' GROUP BY user_id)
SELECT r.inviter, coalesce(c.n, 0), r.regs, r.rewarded, coalesce(g.v, 0)
  FROM r LEFT JOIN c ON c.inviter = r.inviter LEFT JOIN g ON g.user_id = r.inviter
 ORDER BY 4 DESC, 5 DESC, 3 DESC, 1
 LIMIT $2`
	rows, err := pool.Query(ctx, q, campaign, TopN)
	if err != nil {
		return nil, fmt.Errorf("report %q top inviters: %w", campaign, err)
	}
	defer rows.Close()
	var out []Inviter
	for rows.Next() {
		var in Inviter
		if err := rows.Scan(&in.User, &in.Clicks, &in.Registrations, &in.Rewarded, &in.Value); err != nil {
			return nil, fmt.Errorf("report %q top inviters: %w", campaign, err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report %q top inviters: %w", campaign, err)
	}
	return out, nil
}

// pct formats part/whole as a percentage, "-" when whole is 0.
func pct(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

// WriteText writes the report as aligned plain-text tables.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "campaign %s\n", r.Campaign)
	fmt.Fprintf(tw, "funnel: %d clicks -> %d registrations (%s) -> %d rewarded (%s)\n",
		r.Total.Clicks, r.Total.Registrations, pct(r.Total.Registrations, r.Total.Clicks),
		r.Total.Rewarded, pct(r.Total.Rewarded, r.Total.Registrations))
	section := func(title string, rows []Row) {
		fmt.Fprintf(tw, "\n%s\tclicks\tregistrations\trewarded\tclick->reg\treg->reward\n", title)
		for _, row := range rows {
			key := row.Key
			if key == "" {
				key = "(unknown)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", key, row.Clicks, row.Registrations, row.Rewarded,
				pct(row.Registrations, row.Clicks), pct(row.Rewarded, row.Registrations))
		}
	}
	section("region", r.ByRegion)
	section("country", r.ByCountry)
	fmt.Fprintf(tw, "\ntop inviters\tclicks\tregistrations\trewarded\tvalue\n")
	for i, in := range r.TopInviters {
		fmt.Fprintf(tw, "%d. %s\t%d\t%d\t%d\t%d\n", i+1, in.User, in.Clicks, in.Registrations, in.Rewarded, in.Value)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
