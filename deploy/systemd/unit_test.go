package systemd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/refrouter/refrouter/config"
)

// unit is a parsed systemd unit file: section → key → values in order (a key
// may repeat; an empty assignment is kept as "").
type unit map[string]map[string][]string

var errSyntax = errors.New("unit syntax error")

// parseUnit parses the INI dialect of systemd unit files: [Section] headers,
// Key=Value lines, # and ; comments, and backslash line continuations.
func parseUnit(r io.Reader) (unit, error) {
	u := unit{}
	sc := bufio.NewScanner(r)
	section := ""
	lineNo := 0
	var pending strings.Builder
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if pending.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending.WriteString(strings.TrimSuffix(line, "\\"))
			pending.WriteByte(' ')
			continue
		}
		if pending.Len() > 0 {
			pending.WriteString(line)
			line = pending.String()
			pending.Reset()
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") || len(line) < 3 || strings.ContainsAny(line[1:len(line)-1], "[]") {
				return nil, fmt.Errorf("%w: line %d: bad section header %q", errSyntax, lineNo, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("%w: line %d: assignment outside a section", errSyntax, lineNo)
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%w: line %d: want Key=Value, got %q", errSyntax, lineNo, line)
		}
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read unit: %w", err)
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("%w: file ends in a line continuation", errSyntax)
	}
	return u, nil
}

// last returns the effective (last) value of a key and whether it is set.
func (u unit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    unit
		wantErr bool
	}{
		{"empty", "", unit{}, false},
		{"basic", "[Unit]\nDescription=x y\n# c\n; c\n\n[Service]\nA=1\nA=2\nB=\n", unit{"Unit": {"Description": {"x y"}}, "Service": {"A": {"1", "2"}, "B": {""}}}, false},
		{"continuation", "[Service]\nExecStart=/bin/a \\\n  --flag\n", unit{"Service": {"ExecStart": {"/bin/a  --flag"}}}, false},
		{"value with equals", "[Service]\nEnvironment=A=B\n", unit{"Service": {"Environment": {"A=B"}}}, false},
		{"outside section", "A=1\n", nil, true},
		{"no equals", "[Service]\nNoNewPrivileges\n", nil, true},
		{"bad header", "[Service\nA=1\n", nil, true},
		{"empty header", "[]\n", nil, true},
		{"space in key", "[Service]\nNo New=yes\n", nil, true},
		{"dangling continuation", "[Service]\nA=1 \\\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUnit(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, errSyntax) {
					t.Fatalf("err %v is not errSyntax", err)
				}
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseUnit(f *testing.F) {
	f.Add("[Unit]\nDescription=x\n[Service]\nA=1 \\\n 2\n")
	f.Add("A=1\n")
	if b, err := os.ReadFile("refrouter.service"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := parseUnit(strings.NewReader(in))
		if err != nil {
			return
		}
		// Every parsed key lives in a named section and has no spaces.
		for s, kv := range u {
			if s == "" {
				t.Fatal("empty section name")
			}
			for k := range kv {
				if k == "" || strings.ContainsAny(k, " \t=") {
					t.Fatalf("bad key %q", k)
				}
			}
		}
	})
}

func readUnit(t *testing.T) unit {
	t.Helper()
	f, err := os.Open("refrouter.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, err := parseUnit(f)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUnitRequiredKeys(t *testing.T) {
	u := readUnit(t)
	tests := []struct {
		section, key string
		want         string // exact effective value
	}{
		{"Unit", "After", "network-online.target"},
		{"Unit", "Wants", "network-online.target"},
		{"Service", "User", "refrouter"},
		{"Service", "Group", "refrouter"},
		{"Service", "ExecStart", "/usr/local/bin/refrouter serve --config /etc/refrouter/config.yaml"},
		{"Service", "EnvironmentFile", "-/etc/refrouter/refrouter.env"},
		{"Service", "Restart", "on-failure"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "ProtectHome", "yes"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "CapabilityBoundingSet", ""},
		{"Service", "AmbientCapabilities", ""},
		{"Service", "LimitNOFILE", "1048576"},
		{"Service", "ReadWritePaths", "/var/lib/refrouter"},
		{"Service", "StateDirectory", "refrouter"},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, tt := range tests {
		t.Run(tt.section+"."+tt.key, func(t *testing.T) {
			got, ok := u.last(tt.section, tt.key)
			if !ok {
				t.Fatalf("[%s] %s is not set", tt.section, tt.key)
			}
			if got != tt.want {
				t.Fatalf("[%s] %s = %q, want %q", tt.section, tt.key, got, tt.want)
			}
		})
	}
	if _, ok := u.last("Unit", "Description"); !ok {
		t.Error("[Unit] Description is not set")
	}
	// CapabilityBoundingSet must not be widened after being emptied.
	if vs := u["Service"]["CapabilityBoundingSet"]; len(vs) != 1 {
		t.Errorf("CapabilityBoundingSet assigned %d times: %q", len(vs), vs)
	}
}

// TestUnitAgreesWithConfig checks the example config and env file against
// the node's config package and the unit's paths.
func TestUnitAgreesWithConfig(t *testing.T) {
	u := readUnit(t)
	f, err := os.Open("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := config.Parse(f)
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	env, err := os.ReadFile("refrouter.env")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true}
	for _, k := range config.Keys() {
		known["REFROUTER_"+strings.ToUpper(k)] = true
	}
	var environ []string
	sc := bufio.NewScanner(bytes.NewReader(env))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || !known[k] {
			t.Errorf("refrouter.env: %q is not a known setting", line)
		}
		environ = append(environ, line)
	}
	if err := cfg.ApplyEnv(environ); err != nil {
		t.Fatalf("refrouter.env: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config.yaml + refrouter.env: %v", err)
	}
	state, _ := u.last("Service", "StateDirectory")
	rw, _ := u.last("Service", "ReadWritePaths")
	if want := "/var/lib/" + state; cfg.DataDir != want || rw != want {
		t.Errorf("data_dir %q, StateDirectory %q, ReadWritePaths %q: want all %s", cfg.DataDir, state, rw, want)
	}
	execStart, _ := u.last("Service", "ExecStart")
	if !strings.HasSuffix(execStart, "--config /etc/refrouter/config.yaml") {
		t.Errorf("ExecStart %q does not read /etc/refrouter/config.yaml", execStart)
	}
}

// TestSystemdAnalyze runs systemd-analyze verify (and, where supported,
// the offline security score) on the unit, with ExecStart pointed at an
// existing binary since refrouter is not installed here.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; skipping the systemd verification")
	}
	src, err := os.ReadFile("refrouter.service")
	if err != nil {
		t.Fatal(err)
	}
	stand, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary to stand in for refrouter")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "refrouter.service")
	if err := os.WriteFile(p, bytes.ReplaceAll(src, []byte("/usr/local/bin/refrouter"), []byte(stand)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure above 2.0 (of 10) fails; older systemd lacks --offline.
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=20", "--no-pager", p).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("unrecognized option")) || bytes.Contains(out, []byte("Unknown command")) {
			t.Logf("systemd-analyze security --offline unsupported here: %s", bytes.TrimSpace(out))
			return
		}
		t.Fatalf("systemd-analyze security: exposure above 2.0 or error: %v\n%s", err, out)
	}
}
