// Command refrouter is the edge referral router: one binary that serves a
// node, runs the local three-region demo, issues and verifies links offline,
// looks up GeoIP databases, migrates and reports on the attribution database,
// and benchmarks nodes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "refrouter: "+ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "refrouter: "+oneLine(err.Error()))
		os.Exit(1)
	}
}

// exitError carries an exit code other than 1 (e.g. a benchmark regression).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Run runs the command line args with the given output streams.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "refrouter",
		Short:         "Edge referral router for live-stream e-commerce",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		serveCmd(),
		demoCmd(),
		linkCmd(),
		geoCmd(),
		clusterCmd(),
		migrateCmd(),
		reportCmd(),
		outboxCmd(),
		benchCmd(),
		bareCmd(),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				fmt.Fprintln(cmd.OutOrStdout(), "refrouter "+version)
				return nil
			},
		},
	)
	return root.ExecuteContext(ctx)
}
