package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/refrouter/refrouter/attribution/migrate"
	"github.com/refrouter/refrouter/attribution/report"
	"github.com/refrouter/refrouter/bench/bare"
	"github.com/refrouter/refrouter/cluster"
	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/geo"
	"github.com/refrouter/refrouter/geo/geotest"
	"github.com/spf13/cobra"
)

func geoCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "geo", Short: "GeoIP database tools"}
	var dbs []string
	lookup := &cobra.Command{
		Use:   "lookup --db FILE [--db FILE2] IP...",
		Short: "Print one JSON object per IP",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(dbs) == 0 {
				return fmt.Errorf("--db is required")
			}
			d, err := geo.Open(dbs...)
			if err != nil {
				return err
			}
			defer d.Close()
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, a := range args {
				b, err := geo.LookupJSON(d, a)
				if err != nil {
					enc.Encode(map[string]string{"ip": a, "error": err.Error()})
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			}
			return nil
		},
	}
	lookup.Flags().StringArrayVar(&dbs, "db", nil, "mmdb file (repeatable)")
	build := &cobra.Command{
		Use:    "build-demo FILE",
		Short:  "Write the small demo GeoIP database (test ranges in HK, DE, US, …)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return geotest.BuildDemo(args[0])
		},
	}
	cmd.AddCommand(lookup, build)
	return cmd
}

func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster tools"}
	var addr, token string
	var jsonOut bool
	status := &cobra.Command{
		Use:   "status --addr http://NODE --token ADMIN_TOKEN [--json]",
		Short: "Members, regions, raft roles, the leader and indexes, as a node sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				token = os.Getenv("REFROUTER_ADMIN_TOKEN")
			}
			var st cluster.Status
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			if err := apiCall(ctx, http.MethodGet, strings.TrimRight(addr, "/")+"/v1/cluster", token, nil, &st); err != nil {
				return err
			}
			if jsonOut {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(st)
			}
			return st.WriteText(cmd.OutOrStdout())
		},
	}
	status.Flags().StringVar(&addr, "addr", "http://127.0.0.1:8081", "HTTP URL of any node")
	status.Flags().StringVar(&token, "token", "", "admin token (or REFROUTER_ADMIN_TOKEN)")
	status.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	cmd.AddCommand(status)
	return cmd
}

func openPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	if dsn == "" {
		dsn = os.Getenv("REFROUTER_DSN")
	}
	if dsn == "" {
		return nil, fmt.Errorf("--dsn is required")
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("bad dsn: %s", config.DSNError(err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

func migrateCmd() *cobra.Command {
	var dsn string
	var regions []string
	cmd := &cobra.Command{
		Use:   "migrate --dsn DSN",
		Short: "Apply the attribution schema (idempotent; CockroachDB multi-region overlay when the server is CockroachDB)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			pool, err := openPool(ctx, dsn)
			if err != nil {
				return err
			}
			defer pool.Close()
			opts := migrate.Options{RegionMap: map[string]string{}}
			for _, r := range regions {
				k, v, ok := strings.Cut(r, "=")
				if !ok {
					return fmt.Errorf("--region %q: want node-region=db-region", r)
				}
				opts.RegionMap[k] = v
				if !slices.Contains(opts.Regions, v) {
					opts.Regions = append(opts.Regions, v)
				}
			}
			if err := migrate.Migrate(ctx, pool, opts); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "schema up to date")
			return nil
		},
	}
	cmd.Flags().StringVar(&dsn, "dsn", "", "database URL (or REFROUTER_DSN)")
	cmd.Flags().StringArrayVar(&regions, "region", nil, "node-region=db-region for CockroachDB, primary region first (repeatable)")
	return cmd
}

func reportCmd() *cobra.Command {
	var dsn, campaign string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "report --dsn DSN --campaign ID",
		Short: "Print a campaign's funnel from the database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if campaign == "" {
				return fmt.Errorf("--campaign is required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			pool, err := openPool(ctx, dsn)
			if err != nil {
				return err
			}
			defer pool.Close()
			r, err := report.Funnel(ctx, pool, campaign)
			if err != nil {
				return err
			}
			if jsonOut {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(r)
			}
			return r.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dsn, "dsn", "", "database URL (or REFROUTER_DSN)")
	cmd.Flags().StringVar(&campaign, "campaign", "", "campaign id")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

// bareCmd runs a bare fasthttp 302 server: the comparison beside refrouter in `make bench`.
func bareCmd() *cobra.Command {
	var listen, engine string
	cmd := &cobra.Command{
		Use:    "bare-302 --listen ADDR [--engine fasthttp|edgehttp]",
		Short:  "Serve a fixed 302 on fasthttp (benchmark baseline)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			go func() { <-cmd.Context().Done(); ln.Close() }()
			serve := bare.Serve
			switch engine {
			case "fasthttp":
			case "edgehttp":
				serve = bare.ServeEdge
			default:
				ln.Close()
				return fmt.Errorf("--engine %q: want fasthttp or edgehttp", engine)
			}
			err = serve(ln)
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8090", "listen address")
	cmd.Flags().StringVar(&engine, "engine", "fasthttp", "HTTP engine: fasthttp, or edgehttp (refrouter's redirect server)")
	return cmd
}
