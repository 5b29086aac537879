package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// loadConfig reads --config, applies REFROUTER_* variables, then flags that
// were set on the command line (flags win).
func loadConfig(cmd *cobra.Command, path string) (config.Config, error) {
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return cfg, err
	}
	var ferr error
	keys := config.Keys()
	cmd.Flags().Visit(func(f *pflag.Flag) {
		key := strings.ReplaceAll(f.Name, "-", "_")
		if !slices.Contains(keys, key) {
			return // the command's own flags (--config, --log-json)
		}
		if err := cfg.Set(key, f.Value.String()); err != nil && ferr == nil {
			ferr = err
		}
	})
	return cfg, ferr
}

// addConfigFlags adds one flag per overridable config key.
func addConfigFlags(cmd *cobra.Command) {
	for _, k := range config.Keys() {
		cmd.Flags().String(strings.ReplaceAll(k, "_", "-"), "", "override config "+k)
	}
}

func newLogger(level string, jsonOut bool) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if jsonOut {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func serveCmd() *cobra.Command {
	var path string
	var logJSON bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run one refrouter node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" && os.Getenv("REFROUTER_NAME") == "" {
				return config.ErrNoConfig
			}
			cfg, err := loadConfig(cmd, path)
			if err != nil {
				return err
			}
			log := newLogger(cfg.LogLevel, logJSON)
			n, err := node.New(cfg, node.Options{Logger: log, Version: version})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := n.Start(ctx); err != nil {
				sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				n.Shutdown(sctx)
				return err
			}
			<-ctx.Done()
			log.Info("shutting down", "node", cfg.Name)
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := n.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "node configuration file (YAML)")
	cmd.Flags().BoolVar(&logJSON, "log-json", false, "write logs as JSON")
	addConfigFlags(cmd)
	return cmd
}
