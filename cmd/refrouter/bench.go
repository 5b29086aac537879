package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/refrouter/refrouter/bench"
	"github.com/refrouter/refrouter/bench/loadgen"
	"github.com/refrouter/refrouter/bench/report"
	"github.com/refrouter/refrouter/bench/scenario"
	"github.com/spf13/cobra"
)

// benchFlags are the flags every bench scenario shares.
type benchFlags struct {
	targets     []string // name=url or url; region via name@region=url
	rate        float64
	connections int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	jsonOut     bool
	outDir      string
	compare     string
	threshold   float64
	campaign    string
	token       string
	inviters    int
	codesFile   string
	ipsFile     string
	cidrs       string
	wait        time.Duration
	conversion  float64
}

func (f *benchFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.targets, "target", nil, "node to load: URL, or NAME@REGION=URL (repeatable)")
	fl.Float64Var(&f.rate, "rate", 1000, "requests per second, constant (open loop)")
	fl.IntVar(&f.connections, "connections", 64, "connections (and workers)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "measured duration")
	fl.DurationVar(&f.warmup, "warmup", 2*time.Second, "warm-up before measuring")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "per-request timeout")
	fl.BoolVar(&f.jsonOut, "json", false, "print JSON instead of the table")
	fl.StringVar(&f.outDir, "out", "", "also write .txt, .json and SVG plots into this directory")
	fl.StringVar(&f.compare, "compare", "", "baseline JSON; exit 3 on a regression beyond --threshold")
	fl.Float64Var(&f.threshold, "threshold", 0.10, "regression threshold for --compare (0.10 = 10 %)")
	fl.StringVar(&f.campaign, "campaign", "demo", "campaign id")
	fl.StringVar(&f.token, "platform-token", os.Getenv("REFROUTER_PLATFORM_TOKEN"), "platform token (links, registrations)")
	fl.IntVar(&f.inviters, "inviters", 200, "share links to issue for the run (when no --codes file)")
	fl.StringVar(&f.codesFile, "codes", "", "file of share codes, one per line")
	fl.StringVar(&f.ipsFile, "ips", "", "file of client IPs, one per line, sent as X-Forwarded-For")
	fl.StringVar(&f.cidrs, "cidrs", "", "comma-separated CIDRs to spread client IPs over (X-Forwarded-For)")
	fl.DurationVar(&f.wait, "wait", 0, "register: ask for the decision with ?wait= (decision latency)")
	fl.Float64Var(&f.conversion, "conversion", 0.1, "funnel: fraction of requests that are registrations")
}

func parseTargets(specs []string) ([]loadgen.Target, error) {
	if len(specs) == 0 {
		return nil, errors.New("--target is required")
	}
	var ts []loadgen.Target
	for _, s := range specs {
		t := loadgen.Target{URL: s, Name: s}
		if name, url, ok := strings.Cut(s, "="); ok && !strings.Contains(name, "/") {
			t.URL = url
			t.Name, t.Region, _ = strings.Cut(name, "@")
		}
		if !strings.HasPrefix(t.URL, "http://") && !strings.HasPrefix(t.URL, "https://") {
			return nil, fmt.Errorf("--target %q: want an http(s) URL", s)
		}
		t.URL = strings.TrimRight(t.URL, "/")
		ts = append(ts, t)
	}
	return ts, nil
}

func (f *benchFlags) clientIPs() ([]netip.Addr, error) {
	switch {
	case f.ipsFile != "":
		return scenario.ReadIPsFile(f.ipsFile)
	case f.cidrs != "":
		ps, err := scenario.ParsePrefixes(f.cidrs)
		if err != nil {
			return nil, err
		}
		return scenario.IPsFromCIDRs(ps, 4096, 1)
	}
	return nil, nil
}

// codes returns the share codes of the run: from --codes, or issued now
// through the API of the first target.
func (f *benchFlags) codes(ctx context.Context, target string) ([]string, error) {
	if f.codesFile != "" {
		b, err := os.ReadFile(f.codesFile)
		if err != nil {
			return nil, fmt.Errorf("read --codes: %w", err)
		}
		var out []string
		for i, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			if len(l) != 16 {
				return nil, fmt.Errorf("--codes %s line %d: %q is not a 16-character code", f.codesFile, i+1, l)
			}
			out = append(out, l)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("--codes %s: no codes", f.codesFile)
		}
		return out, nil
	}
	if f.token == "" {
		return nil, errors.New("--platform-token (or REFROUTER_PLATFORM_TOKEN) is needed to issue links, or give --codes")
	}
	prefix := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	out := make([]string, 0, f.inviters)
	for i := 0; i < f.inviters; i++ {
		var l struct {
			Code string `json:"code"`
		}
		err := apiCall(ctx, "POST", target+"/v1/campaigns/"+f.campaign+"/links", f.token,
			map[string]string{"inviter": fmt.Sprintf("%s-%d", prefix, i)}, &l)
		if err != nil {
			return nil, fmt.Errorf("issue bench links: %w", err)
		}
		out = append(out, l.Code)
	}
	return out, nil
}

// runScenario runs one scenario against every target in turn and reports.
func (f *benchFlags) runScenario(cmd *cobra.Command, make func(ctx context.Context, t loadgen.Target) (scenario.Scenario, error)) error {
	ctx := cmd.Context()
	targets, err := parseTargets(f.targets)
	if err != nil {
		return err
	}
	var results []*bench.Result
	for _, t := range targets {
		sc, err := make(ctx, t)
		if err != nil {
			return err
		}
		res, err := loadgen.Run(ctx, loadgen.Options{
			Rate: f.rate, Connections: f.connections, Duration: f.duration, Warmup: f.warmup,
			Timeout: f.timeout, Name: sc.Name,
		}, t, sc.Build, sc.Check)
		if err != nil {
			return fmt.Errorf("bench %s against %s: %w", sc.Name, t.URL, err)
		}
		results = append(results, res)
	}
	if err := f.report(cmd.OutOrStdout(), results); err != nil {
		return err
	}
	for _, r := range results {
		if r.Sent > 0 && r.OK == 0 {
			// The report is printed, but a run with no good answer measured
			// nothing: its percentiles would read as zeros.
			return fmt.Errorf("bench %s against %s: none of %d requests succeeded (errors %v)", r.Scenario, r.Target, r.Sent, r.Errors)
		}
	}
	return nil
}

func (f *benchFlags) report(w io.Writer, results []*bench.Result) error {
	if f.jsonOut {
		if err := report.WriteJSON(w, results); err != nil {
			return err
		}
	} else if err := report.WriteText(w, results); err != nil {
		return err
	}
	if f.outDir != "" {
		files, err := report.WriteFiles(f.outDir, "bench-"+time.Now().UTC().Format("20060102T150405"), results)
		if err != nil {
			return err
		}
		if !f.jsonOut {
			fmt.Fprintf(w, "wrote %+v\n", files)
		}
	}
	if f.compare != "" {
		base, err := report.ReadJSONFile(f.compare)
		if err != nil {
			return err
		}
		cmp, regressed := report.Compare(base, results, f.threshold)
		out := w
		if f.jsonOut {
			out = os.Stderr
		}
		if err := cmp.WriteText(out); err != nil {
			return err
		}
		if regressed {
			return &exitError{code: 3, msg: fmt.Sprintf("regression beyond %.0f %% against %s", f.threshold*100, filepath.Base(f.compare))}
		}
	}
	return nil
}

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Open-loop latency benchmarks of refrouter nodes (HDR histograms, no coordinated omission)",
	}
	var rf, gf, ff benchFlags
	redirect := &cobra.Command{
		Use:   "redirect --target URL [--rate N --connections N --duration D]",
		Short: "GET /<code> on share links of many inviters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ips, err := rf.clientIPs()
			if err != nil {
				return err
			}
			var codes []string
			return rf.runScenario(cmd, func(ctx context.Context, t loadgen.Target) (scenario.Scenario, error) {
				if codes == nil {
					if codes, err = rf.codes(ctx, t.URL); err != nil {
						return scenario.Scenario{}, err
					}
				}
				return scenario.Redirect(codes, ips), nil
			})
		},
	}
	rf.add(redirect)
	register := &cobra.Command{
		Use:   "register --target URL --platform-token T [--wait 2s]",
		Short: "POST /v1/registrations: acknowledgement latency, or decision latency with --wait",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ips, err := gf.clientIPs()
			if err != nil {
				return err
			}
			var codes []string
			return gf.runScenario(cmd, func(ctx context.Context, t loadgen.Target) (scenario.Scenario, error) {
				if codes == nil {
					if codes, err = gf.codes(ctx, t.URL); err != nil {
						return scenario.Scenario{}, err
					}
				}
				return scenario.Register(scenario.RegisterConfig{
					Campaign: gf.campaign, Codes: codes, Wait: gf.wait, Token: gf.token, IPs: ips,
				}), nil
			})
		},
	}
	gf.add(register)
	funnel := &cobra.Command{
		Use:   "funnel --target URL --platform-token T [--conversion 0.1]",
		Short: "Clicks, then registrations at a conversion rate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ips, err := ff.clientIPs()
			if err != nil {
				return err
			}
			var codes []string
			return ff.runScenario(cmd, func(ctx context.Context, t loadgen.Target) (scenario.Scenario, error) {
				if codes == nil {
					if codes, err = ff.codes(ctx, t.URL); err != nil {
						return scenario.Scenario{}, err
					}
				}
				return scenario.Funnel(scenario.FunnelConfig{
					Codes: codes, IPs: ips, Conversion: ff.conversion,
					Register: scenario.RegisterConfig{Campaign: ff.campaign, Wait: ff.wait, Token: ff.token},
				})
			})
		},
	}
	ff.add(funnel)
	var threshold float64
	compare := &cobra.Command{
		Use:   "compare BASELINE.json CURRENT.json",
		Short: "Compare two saved runs; exit 3 on a regression beyond --threshold",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cur, err := report.ReadJSONFile(args[1])
			if err != nil {
				return err
			}
			f := benchFlags{compare: args[0], threshold: threshold}
			return f.report(cmd.OutOrStdout(), cur)
		},
	}
	compare.Flags().Float64Var(&threshold, "threshold", 0.10, "regression threshold (0.10 = 10 %)")
	cmd.AddCommand(redirect, register, funnel, compare, benchClusterCmd())
	return cmd
}
