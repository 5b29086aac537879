package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/links"
	"github.com/refrouter/refrouter/node"
	"github.com/spf13/cobra"
)

// keyringFromConfig loads only what the link keys need from a node config.
func keyringFromConfig(path string) (*links.Keyring, error) {
	if path == "" {
		return nil, config.ErrNoConfig
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return nil, err
	}
	sec, err := cfg.Resolve()
	if err != nil {
		return nil, err
	}
	return node.NewKeyring(sec.Secrets, cfg.ClickTokenVersion, time.Now())
}

func linkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "link",
		Short: "Issue and verify share codes offline, from a node config",
	}
	var path string
	var campaign uint16
	var inviter uint32
	var variant uint8
	var base string
	issue := &cobra.Command{
		Use:   "issue --config FILE --campaign-number N --inviter-number M",
		Short: "Issue the code of (campaign number, inviter number) with the current key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kr, err := keyringFromConfig(path)
			if err != nil {
				return err
			}
			if campaign == 0 {
				return errors.New("--campaign-number is required (1-65535; GET /v1/campaigns/{id} shows it)")
			}
			cb, err := kr.AppendCode(nil, links.Code{Campaign: campaign, Inviter: inviter, Variant: variant})
			if err != nil {
				return fmt.Errorf("--variant %d: %w", variant, err)
			}
			code := string(cb)
			out := map[string]any{"code": code}
			if base != "" {
				out["url"] = base + "/" + code
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
		},
	}
	issue.Flags().StringVar(&path, "config", "", "node configuration file")
	issue.Flags().Uint16Var(&campaign, "campaign-number", 0, "campaign number")
	issue.Flags().Uint32Var(&inviter, "inviter-number", 0, "inviter number")
	issue.Flags().Uint8Var(&variant, "variant", 0, "reward variant (0-7)")
	issue.Flags().StringVar(&base, "base-url", "", "public URL to print the link with")

	verify := &cobra.Command{
		Use:   "verify --config FILE CODE...",
		Short: "Verify codes; exits 1 when any is invalid",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr, err := keyringFromConfig(path)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			bad := 0
			for _, a := range args {
				c, err := kr.Verify([]byte(a), time.Now())
				if err != nil {
					bad++
					enc.Encode(map[string]any{"code": a, "valid": false, "error": err.Error()})
					continue
				}
				enc.Encode(map[string]any{"code": a, "valid": true, "campaign_number": c.Campaign, "inviter_number": c.Inviter, "variant": c.Variant, "gen": c.Gen})
			}
			if bad > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d of %d codes invalid", bad, len(args))}
			}
			return nil
		},
	}
	verify.Flags().StringVar(&path, "config", "", "node configuration file")
	cmd.AddCommand(issue, verify)
	return cmd
}
