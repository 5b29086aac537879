// Package bench holds the shared result types of refrouter's benchmarks and a
// per-process CPU meter.
//
// The work is split into subpackages, each with one job:
//
//   - bench/loadgen: an open-loop, constant-rate HTTP load generator (fasthttp)
//     that measures latency from each request's scheduled send time, so a
//     stalled server cannot hide its stall (no coordinated omission).
//   - bench/scenario: request builders for the refrouter API (redirect,
//     registration, funnel) and client IP helpers.
//   - bench/report: text tables, JSON (baselines), SVG plots and the
//     comparison of a run against a baseline.
//   - bench/delay: a latency-injecting TCP proxy for simulated regions.
//   - bench/bare: a bare fasthttp 302 server, the comparison floor.
//
// Result is the one record every part exchanges: loadgen produces it, report
// prints, stores, plots and compares it.
package bench
