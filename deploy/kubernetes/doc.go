// Package kubernetes holds refrouter's Kubernetes manifests: a kustomize
// base (base/) for one region and example overlays (overlays/<region>) for
// ap-east, eu-central and us-east. The package has no runtime code; its tests
// decode every manifest strictly into the Kubernetes API types and render the
// overlays with kustomize (krusty) to check names, ports, probes and the
// node configuration against each other.
package kubernetes
