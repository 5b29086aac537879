package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/refrouter/refrouter/geo/geotest"
	"github.com/refrouter/refrouter/node/localcluster"
	"github.com/spf13/cobra"
)

// demoCampaign is the campaign the demo creates (idempotent by id).
func demoCampaign() map[string]any {
	return map[string]any{
		"id":                 "demo",
		"destination":        "https://live.example.com/room/42",
		"allowed_hosts":      []string{"live.example.com"},
		"starts_at":          "2026-01-01T00:00:00Z",
		"ends_at":            "2036-01-01T00:00:00Z",
		"budget":             map[string]any{"value": 100000},
		"invitee_reward":     map[string]any{"value": 10},
		"inviter_rewards":    []map[string]any{{"from": 1, "to": 3, "value": 10}, {"from": 4, "to": 10, "value": 20}, {"from": 11, "value": 50}},
		"per_inviter_cap":    20,
		"attribution_window": "168h",
		"attribution_model":  "last_click",
	}
}

type demoNode struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	URL    string `json:"url"`
}

type demoInfo struct {
	Nodes         []demoNode `json:"nodes"`
	AdminToken    string     `json:"admin_token"`
	PlatformToken string     `json:"platform_token"`
	Campaign      string     `json:"campaign"`
	Link          string     `json:"link"`
	DataDir       string     `json:"data_dir"`
}

func demoCmd() *cobra.Command {
	var (
		dataDir, geoip, dsn, writeConfigs, logLevel string
		basePort                                    int
		jsonOut                                     bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a three-region demo cluster (hk-1, fra-1, iad-1) on 127.0.0.1",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			if writeConfigs != "" && dataDir == "" {
				return fmt.Errorf("--write-configs needs --data-dir: the configs point at the nodes' data, which a temporary directory would take away when the demo stops")
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: must be debug, info, warn or error", logLevel)
			}
			if last := basePort + 3*len(localcluster.DemoSites); basePort < 0 || last > 65535 {
				return fmt.Errorf("--base-port %d: the demo listens on base+1 to base+%d, which must be ports up to 65535", basePort, last-basePort)
			}
			temp := false
			if dataDir == "" {
				d, err := os.MkdirTemp("", "refrouter-demo-")
				if err != nil {
					return fmt.Errorf("make temp data dir: %w", err)
				}
				dataDir, temp = d, true
			} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			if temp {
				defer os.RemoveAll(dataDir)
			}
			var geoFiles []string
			if geoip != "" {
				geoFiles = []string{geoip}
			} else {
				p := filepath.Join(dataDir, "demo-geo.mmdb")
				if err := geotest.BuildDemo(p); err != nil {
					return fmt.Errorf("build demo GeoIP database: %w", err)
				}
				geoFiles = []string{p}
			}
			opts := localcluster.Options{
				Sites: localcluster.DemoSites, DataDir: dataDir, BasePort: basePort,
				GeoIP: geoFiles, DSN: dsn, Version: version,
				Logger: newLogger(logLevel, false),
			}
			if writeConfigs != "" {
				s, err := localcluster.LoadSecrets(dataDir)
				if err != nil {
					return err
				}
				paths, err := localcluster.WriteConfigs(writeConfigs, localcluster.Configs(opts, s))
				if err != nil {
					return err
				}
				if !jsonOut {
					for _, p := range paths {
						fmt.Fprintf(out, "wrote %s (start it alone: refrouter serve --config %s)\n", p, p)
					}
				}
			}
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			lc, err := localcluster.Start(sctx, opts)
			cancel()
			if err != nil {
				return err
			}
			stopped := false // by a signal, as the demo ends normally
			defer func() {
				dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				err := lc.Shutdown(dctx)
				if stopped && !jsonOut {
					if err != nil {
						fmt.Fprintf(out, "refrouter demo: stopped, with errors: %v\n", err)
					} else {
						fmt.Fprintln(out, "refrouter demo: stopped")
					}
				}
			}()
			info := demoInfo{AdminToken: lc.Secrets.AdminToken, PlatformToken: lc.Secrets.PlatformToken, Campaign: "demo", DataDir: dataDir}
			for _, c := range lc.Configs {
				info.Nodes = append(info.Nodes, demoNode{Name: c.Name, Region: c.Region, URL: c.PublicURL})
			}
			first := info.Nodes[0].URL
			if err := apiCall(ctx, "POST", first+"/v1/campaigns", info.AdminToken, demoCampaign(), nil); err != nil {
				return fmt.Errorf("create demo campaign: %w", err)
			}
			var link struct {
				URL string `json:"url"`
			}
			if err := apiCall(ctx, "POST", first+"/v1/campaigns/demo/links", info.PlatformToken, map[string]string{"inviter": "alice"}, &link); err != nil {
				return fmt.Errorf("issue demo link: %w", err)
			}
			info.Link = link.URL
			if jsonOut {
				b, _ := json.Marshal(info)
				fmt.Fprintln(out, string(b))
			} else {
				printDemo(out, info)
			}
			<-ctx.Done()
			stopped = true
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "keep the demo's state here (default: a temp dir removed on exit)")
	f.IntVar(&basePort, "base-port", 8080, "HTTP on base+1..base+3, gossip base+4..6, cluster base+7..9")
	f.StringVar(&geoip, "geoip", "", "GeoIP2/GeoLite2 or ip-location-db mmdb file (default: a small generated demo database)")
	f.StringVar(&dsn, "dsn", "", "PostgreSQL/CockroachDB URL to replicate attribution into")
	f.StringVar(&writeConfigs, "write-configs", "", "also write the three node configs into this directory")
	f.StringVar(&logLevel, "log-level", "error", "debug, info, warn or error")
	f.BoolVar(&jsonOut, "json", false, "print one JSON line once every node is ready")
	return cmd
}

func printDemo(w io.Writer, info demoInfo) {
	fmt.Fprintf(w, "refrouter demo: three regions on 127.0.0.1 (state in %s)\n\n", info.DataDir)
	for _, n := range info.Nodes {
		fmt.Fprintf(w, "  %-6s %-11s %s\n", n.Name, n.Region, n.URL)
	}
	a, p, n1 := info.AdminToken, info.PlatformToken, info.Nodes[0].URL
	fmt.Fprintf(w, `
admin token:    %s
platform token: %s
campaign:       demo
sample link:    %s

Try it:
  curl -si %s                                   # 302 to the live room with rr_click
  curl -s -H 'Authorization: Bearer %s' -d '{"inviter":"bob"}' %s/v1/campaigns/demo/links
  curl -s -H 'Authorization: Bearer %s' '%s/v1/registrations?wait=2s' \
       -d '{"campaign":"demo","code":"<code>","invitee":"carol","device":"d-1"}'
  curl -s -H 'Authorization: Bearer %s' %s/v1/campaigns/demo
  curl -s -H 'X-Forwarded-For: 203.0.113.7' %s/v1/nearest
  open %s/dashboard

Ctrl-C stops the demo.
`, a, p, info.Link, info.Link, p, n1, p, n1, a, n1, n1, n1)
}

// apiCall makes one JSON API call and decodes the answer into out (if not nil).
func apiCall(ctx context.Context, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, url, err)
		}
	}
	return nil
}
