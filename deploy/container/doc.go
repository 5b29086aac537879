// Package container holds refrouter's container image definition
// (Dockerfile, built by `make image`). Its tests parse the Dockerfile and
// check the image's contract: a multi-stage static build (CGO_ENABLED=0), a
// distroless or scratch final stage, a non-root user and the node's ports.
package container
