// Package systemd holds refrouter's hardened systemd unit (refrouter.service),
// an example environment file (refrouter.env), an example node config
// (config.yaml) and install notes (INSTALL.md). Its tests parse the unit as
// INI, check the required hardening keys, cross-check the env file and config
// against the node's config package, and run systemd-analyze where present.
package systemd
