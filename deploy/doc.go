// Package deploy holds the deployment artifacts of refrouter (Kubernetes
// manifests, a systemd unit, a container image and a network-namespace
// harness) and the tests that check them. It is its own Go module so that the
// heavy Kubernetes modules stay out of the main module.
package deploy
