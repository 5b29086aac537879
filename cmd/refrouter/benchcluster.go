package main

import (
	"github.com/spf13/cobra"
)

func benchClusterCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "cluster",
		Short:  "Simulated multi-region cluster benchmark",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errNotYet
		},
	}
}
