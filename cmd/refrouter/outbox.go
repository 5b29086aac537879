package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/refrouter/refrouter/attribution/outbox"
	"github.com/spf13/cobra"
)

// outboxCmd inspects a stopped node's outbox and drops a consumer's cursor.
func outboxCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "outbox", Short: "Inspect a stopped node's outbox (the node must not be running)"}
	var dataDir string
	open := func() (*outbox.Outbox, error) {
		if dataDir == "" {
			return nil, fmt.Errorf("--data-dir is required")
		}
		dir := filepath.Join(dataDir, "outbox")
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("--data-dir %q: no outbox directory %s (is it the node's data_dir?)", dataDir, dir)
		}
		return outbox.Open(outbox.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	status := &cobra.Command{
		Use:   "status --data-dir DIR",
		Short: "Print the outbox's first and last sequence numbers and its consumers' cursors",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := open()
			if err != nil {
				return err
			}
			defer o.Close()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "first %d\nlast %d\n", o.FirstSeq(), o.LastSeq())
			cursors := o.Cursors()
			for _, n := range slices.Sorted(maps.Keys(cursors)) {
				fmt.Fprintf(w, "cursor %s %d\n", n, cursors[n])
			}
			return nil
		},
	}
	drop := &cobra.Command{
		Use:   "drop-cursor NAME --data-dir DIR",
		Short: "Forget a consumer that is gone for good (replicator: a node that no longer replicates to a database), so the records only it held are deleted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name == "submitter" {
				return fmt.Errorf("cursor %q is the node's own (registrations not yet submitted to the ledger): it is never dropped", name)
			}
			o, err := open()
			if err != nil {
				return err
			}
			if _, ok := o.Cursors()[name]; !ok {
				o.Close()
				return fmt.Errorf("no cursor %q in %s (see `refrouter outbox status`)", name, dataDir)
			}
			if err := o.DropCursor(name); err != nil {
				o.Close()
				return err
			}
			if err := o.Close(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dropped cursor %s\n", name)
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "", "the node's data directory")
	cmd.AddCommand(status, drop)
	return cmd
}
