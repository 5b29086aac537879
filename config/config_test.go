package config

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func validYAML() string {
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	return `
name: fra-1
region: eu-central
lat: 50.11
lon: 8.68
listen: 127.0.0.1:8082
tokens:
  - {token: admin-token-0123456789, role: admin}
  - {token: platform-token-0123456789, role: platform}
secrets:
  - {gen: 1, key: ` + key + `}
trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]
`
}

func TestParseValidate(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != "http://127.0.0.1:8082" {
		t.Errorf("public_url default = %q", cfg.PublicURL)
	}
	if cfg.Profile != "lan" || cfg.Routing.Mode != "local" || cfg.ClickTokenVersion != 2 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	r, err := cfg.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens["admin-token-0123456789"] != RoleAdmin || len(r.Secrets) != 1 {
		t.Errorf("resolve: %+v", r)
	}
}

func TestValidateNamesFieldAndValue(t *testing.T) {
	tests := []struct {
		name, edit, field, value string
	}{
		{"bad name", "name: Fra_1", "name", "Fra_1"},
		{"bad lat", "lat: 91", "lat", "91"},
		{"bad profile", "profile: moon", "profile", "moon"},
		{"bad proxy", "trusted_proxies: [10.0.0.0/33]", "trusted_proxies", "10.0.0.0/33"},
		{"bad proxy header", "trusted_proxy_header: x-real-ip", "trusted_proxy_header", "x-real-ip"},
		{"bad listen", "listen: nope", "listen", "nope"},
		{"bad url", "public_url: ftp://x", "public_url", "ftp://x"},
		{"url with user info", "public_url: http://u@x.example", "public_url", "http://u@x.example"},
		{"url without host", "public_url: http://:8080", "public_url", "http://:8080"},
		{"click token version 3", "click_token_version: 3", "click_token_version", "3"},
		{"click token version 0", "click_token_version: 0", "click_token_version", "0"},
		{"click token version -1", "click_token_version: -1", "click_token_version", "-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, _, _ := strings.Cut(tt.edit, ":")
			var lines []string
			for _, l := range strings.Split(validYAML(), "\n") {
				if !strings.HasPrefix(l, key+":") {
					lines = append(lines, l)
				}
			}
			cfg, err := Parse(strings.NewReader(strings.Join(lines, "\n") + tt.edit + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want *Error", err)
			}
			if ce.Field != tt.field || ce.Value != tt.value {
				t.Errorf("got field %q value %q, want %q %q (%v)", ce.Field, ce.Value, tt.field, tt.value, err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name the field", err)
			}
		})
	}
}

func TestDurationFromYAML(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML() + "dead_server_timeout: 2m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeadServerTimeout != 2*time.Minute {
		t.Fatalf("dead_server_timeout = %v", cfg.DeadServerTimeout)
	}
}

func TestClickTokenVersion(t *testing.T) {
	for _, v := range []int{1, 2} {
		cfg, err := Parse(strings.NewReader(validYAML() + "click_token_version: " + strconv.Itoa(v) + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil || cfg.ClickTokenVersion != v {
			t.Fatalf("click_token_version: %d: got %d, %v", v, cfg.ClickTokenVersion, err)
		}
	}
	if _, err := Parse(strings.NewReader(validYAML() + "click_token_version: two\n")); err == nil || !strings.Contains(err.Error(), "two") {
		t.Fatalf("Parse(click_token_version: two) = %v, want an error naming the value", err)
	}
}

func TestBadRole(t *testing.T) {
	cfg, err := Parse(strings.NewReader(strings.Replace(validYAML(), "role: admin", "role: root", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var ce *Error
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "tokens[0].role" || ce.Value != "root" {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	_, err := Parse(strings.NewReader(validYAML() + "colour: blue\n"))
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("Parse() = %v, want an error naming the key", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.ApplyEnv([]string{"REFROUTER_NAME=iad-1", "REFROUTER_SEEDS=a:1, b:2", "REFROUTER_VOTER=false", "REFROUTER_LAT=38.95", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "iad-1" || len(cfg.Seeds) != 2 || cfg.Seeds[1] != "b:2" || cfg.Voter || cfg.Lat != 38.95 {
		t.Errorf("env not applied: %+v", cfg)
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_DEAD_SERVER_TIMEOUT=45s"}); err != nil || cfg.DeadServerTimeout != 45*time.Second {
		t.Errorf("duration from env: %v %v", cfg.DeadServerTimeout, err)
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_DEAD_SERVER_TIMEOUT=soon"}); err == nil {
		t.Error("bad duration accepted")
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_LAT=north"}); err == nil || !strings.Contains(err.Error(), "REFROUTER_LAT") {
		t.Errorf("bad env value: %v", err)
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_ROUTING=redirect"}); err == nil || !strings.Contains(err.Error(), "routing") || !strings.Contains(err.Error(), "REFROUTER_ROUTING") {
		t.Errorf("a structured key from env: %v, want an error naming it", err)
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_CLICK_TOKEN_VERSION=1"}); err != nil || cfg.ClickTokenVersion != 1 {
		t.Errorf("click_token_version from env: %v %v", cfg.ClickTokenVersion, err)
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_CLICK_TOKEN_VERSION=v2"}); err == nil || !strings.Contains(err.Error(), "REFROUTER_CLICK_TOKEN_VERSION") {
		t.Errorf("bad click_token_version from env: %v", err)
	}
	if err := cfg.ApplyEnv([]string{"REFROUTER_CLICK_TOKEN_VERSION=7"}); err != nil {
		t.Errorf("REFROUTER_CLICK_TOKEN_VERSION=7: %v (Validate, not Set, rejects it)", err)
	} else if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `click_token_version "7"`) {
		t.Errorf("Validate after REFROUTER_CLICK_TOKEN_VERSION=7: %v", err)
	}
	if err := cfg.Set("nope", "1"); err == nil {
		t.Error("unknown key accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(validYAML())
	f.Add("name: [")
	f.Add("tokens: {a: 1}")
	f.Add("lat: .nan\nlon: .inf")
	f.Add(validYAML() + "click_token_version: 1\n")
	f.Add(validYAML() + "click_token_version: 256\n")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err == nil {
			if cfg.Lat != cfg.Lat || cfg.Lat < -90 || cfg.Lat > 90 {
				t.Fatalf("validated a bad lat %v", cfg.Lat)
			}
			if !nameRE.MatchString(cfg.Name) {
				t.Fatalf("validated a bad name %q", cfg.Name)
			}
			if cfg.ClickTokenVersion != 1 && cfg.ClickTokenVersion != 2 {
				t.Fatalf("validated click_token_version %d", cfg.ClickTokenVersion)
			}
		}
	})
}

func TestClusterTLS(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML() + "cluster_tls: {cert_file: /x.crt}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ce *Error
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "cluster_tls" {
		t.Fatalf("half a TLS config: %v", err)
	}
	cfg, _ = Parse(strings.NewReader(validYAML() + "cluster_tls: {cert_file: /nonexistent.crt, key_file: /nonexistent.key, ca_file: /nonexistent.ca}\n"))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Resolve(); !errors.As(err, &ce) || ce.Field != "cluster_tls.cert_file" {
		t.Fatalf("missing certificate: %v", err)
	}
}

// TestKeysRequiredBeyondLoopback: a node whose cluster or gossip port
// listens beyond loopback needs both keys; on loopback (the demo, tests)
// they stay optional.
func TestKeysRequiredBeyondLoopback(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 32)))
	for _, tc := range []struct {
		name, cluster, gossip, clusterKey, gossipKey, wantErr string
	}{
		{"loopback, no keys", "127.0.0.1:7947", "127.0.0.1:7946", "", "", ""},
		{"public cluster port, no keys", "10.0.0.5:7947", "127.0.0.1:7946", "", "", "cluster_key"},
		{"public gossip port, cluster key only", "127.0.0.1:7947", "0.0.0.0:7946", key, "", "gossip_key"},
		{"public, both keys", "10.0.0.5:7947", "10.0.0.5:7946", key, key, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Cluster, c.Gossip, c.ClusterKey, c.GossipKey = tc.cluster, tc.gossip, tc.clusterKey, tc.gossipKey
			c.Secrets = []Secret{{Gen: 1, Key: key}}
			_, err := c.Resolve()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Resolve: %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestDSNErrorHidesTheDSN: a DSN that does not parse is reported without
// the DSN, whatever spelling of its password pgx fails to mask.
func TestDSNErrorHidesTheDSN(t *testing.T) {
	_, err := pgxpool.ParseConfig("host=h password = S3cretPW port=abc")
	if err == nil {
		t.Fatal("the DSN parsed")
	}
	if msg := DSNError(err); strings.Contains(msg, "S3cretPW") || !strings.Contains(msg, "dsn not shown") {
		t.Fatalf("DSNError = %q", msg)
	}
}

// TestSecretsFileErrorHidesKeys: a secrets file that does not parse is
// reported by line, without the text the parser quotes (a key).
func TestSecretsFileErrorHidesKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets.yaml")
	if err := os.WriteFile(p, []byte("SUPERSECRETKEYMATERIAL\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.SecretsFile = p
	_, err := c.Resolve()
	if err == nil || strings.Contains(err.Error(), "SUPERSE") || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("Resolve: %v", err)
	}
}
