// Package config holds the configuration of one refrouter node: how it is read
// from YAML, overridden by flags and REFROUTER_* environment variables, given
// defaults and validated. A Config is a plain value; nothing here touches the
// network.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Roles a bearer token may hold.
const (
	RoleAdmin    = "admin"    // campaigns, reviews, cluster status
	RolePlatform = "platform" // links and registrations
)

// Token is one bearer token and its role. Exactly one of Token and TokenFile is set.
type Token struct {
	Token     string `yaml:"token,omitempty"`
	TokenFile string `yaml:"token_file,omitempty"`
	Role      string `yaml:"role"`
}

// Secret is one master link key: share codes and click tokens are signed with
// keys derived from it per campaign. The newest generation that is not retired
// and whose issue_from has come issues new codes; older ones keep verifying
// until RetireAt (the grace period).
type Secret struct {
	Gen      uint8     `yaml:"gen"`
	Key      string    `yaml:"key"` // base64, at least 32 bytes once decoded
	RetireAt time.Time `yaml:"retire_at,omitempty"`
	// IssueFrom is when the generation may start issuing codes (empty: at
	// once); it verifies from the start. Set it past the end of the rolling
	// restart that adds the key, so that no node issues codes another node
	// cannot verify yet.
	IssueFrom time.Time `yaml:"issue_from,omitempty"`
}

// TLS configures mutual TLS on the cluster port (raft and forwarding). All
// three files are PEM; CAFile holds the CA that signs every node's
// certificate, and each certificate must name the host others dial
// (advertise, or the cluster address's host) or set ServerName.
type TLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name,omitempty"` // name to verify instead of the dialled host
}

// Routing selects how a node treats clients that are far from it.
type Routing struct {
	// Mode is "local" (serve every client here, the default) or "redirect"
	// (send a client farther than ThresholdKm to the nearest node).
	Mode        string  `yaml:"mode"`
	ThresholdKm float64 `yaml:"threshold_km"`
}

// Config is the configuration of one node. Field names are the YAML keys; each
// top-level scalar or list may be overridden by REFROUTER_<KEY> (upper case) or
// the flag --<key> (dashes for underscores). Lists given that way are comma-separated.
type Config struct {
	Name      string  `yaml:"name"`       // node name, unique in the cluster: [a-z0-9-], 1-32 chars
	Region    string  `yaml:"region"`     // region label, e.g. eu-central
	Lat       float64 `yaml:"lat"`        // node latitude, degrees
	Lon       float64 `yaml:"lon"`        // node longitude, degrees
	PublicURL string  `yaml:"public_url"` // base URL viewers reach this node at

	Listen    string   `yaml:"listen"`    // HTTP listen address
	Gossip    string   `yaml:"gossip"`    // memberlist listen address (TCP+UDP)
	Cluster   string   `yaml:"cluster"`   // raft + forwarding RPC listen address (TCP)
	Advertise string   `yaml:"advertise"` // host other nodes use to reach gossip and cluster ports
	Seeds     []string `yaml:"seeds"`     // gossip addresses of other nodes

	Profile           string        `yaml:"profile"`             // local | lan | wan
	DeadServerTimeout time.Duration `yaml:"dead_server_timeout"` // raft drops a member dead this long (0: the profile's default)
	Voter             bool          `yaml:"voter"`               // takes part in raft votes
	BootstrapExpect   int           `yaml:"bootstrap_expect"`    // voters that form a new cluster: must equal the voters started the first time

	DataDir string `yaml:"data_dir"` // raft log, snapshots and the outbox live here

	Tokens         []Token  `yaml:"tokens"`
	GossipKey      string   `yaml:"gossip_key"`       // base64 AES key (16/24/32 bytes); empty: no gossip encryption
	GossipKeyFile  string   `yaml:"gossip_key_file"`  // file holding GossipKey
	ClusterKey     string   `yaml:"cluster_key"`      // base64, authenticates raft and forwarding connections
	ClusterKeyFile string   `yaml:"cluster_key_file"` // file holding ClusterKey
	Secrets        []Secret `yaml:"secrets"`          // master link keys
	SecretsFile    string   `yaml:"secrets_file"`     // YAML file holding a list of Secret

	// ClickTokenVersion is the version of the click tokens (rr_click) the
	// node signs: 2 (AES-128-CMAC, the default) or 1 (HMAC-SHA256). Nodes
	// verify both; set 1 only while a cluster is upgraded from a build that
	// verifies version 1 alone, then 2 once every node runs this one.
	ClickTokenVersion int `yaml:"click_token_version"`

	GeoIP          []string `yaml:"geoip"`           // GeoIP2/GeoLite2 or ip-location-db mmdb files
	TrustedProxies []string `yaml:"trusted_proxies"` // CIDRs whose X-Forwarded-For is believed
	// TrustedProxyHeader is the forwarding header the trusted proxies
	// append: "x-forwarded-for" (the default), "forwarded" (RFC 7239) or
	// "auto" (X-Forwarded-For when present, else Forwarded). Name the one
	// your proxies write: a header they leave alone is the client's to set.
	TrustedProxyHeader string `yaml:"trusted_proxy_header"`

	DSN      string            `yaml:"dsn"`       // PostgreSQL/CockroachDB URL; empty: no replication
	DSNFile  string            `yaml:"dsn_file"`  // file holding DSN
	DBRegion map[string]string `yaml:"db_region"` // node region → database region (CockroachDB)
	Migrate  bool              `yaml:"migrate"`   // apply schema migrations at start

	ClusterTLS     TLS     `yaml:"cluster_tls"` // optional mTLS on the cluster port
	Routing        Routing `yaml:"routing"`
	OutboxMaxBytes int64   `yaml:"outbox_max_bytes"` // bound on the outbox; clicks are shed beyond it
	LogLevel       string  `yaml:"log_level"`        // debug | info | warn | error
}

// Default returns the configuration a node starts from before the file, the
// environment and flags are applied.
func Default() Config {
	return Config{
		Region:             "local",
		Listen:             "127.0.0.1:8080",
		Gossip:             "127.0.0.1:7946",
		Cluster:            "127.0.0.1:7947",
		Profile:            "lan",
		Voter:              true,
		BootstrapExpect:    1,
		DataDir:            "refrouter-data",
		ClickTokenVersion:  2,
		TrustedProxyHeader: "x-forwarded-for",
		Routing:            Routing{Mode: "local", ThresholdKm: 3000},
		OutboxMaxBytes:     1 << 30,
		LogLevel:           "info",
	}
}

// Error is a configuration error naming the field and the bad value.
type Error struct {
	Field string
	Value string
	Err   error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("config: %s %q: %v", e.Field, e.Value, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func fieldErr(field, value string, format string, args ...any) error {
	return &Error{Field: field, Value: value, Err: fmt.Errorf(format, args...)}
}

// Parse reads YAML over the defaults. Unknown keys are an error.
func Parse(r io.Reader) (Config, error) {
	cfg := Default()
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return cfg, fmt.Errorf("config: read: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// Load reads the file at path (if path is not empty) over the defaults, then
// applies REFROUTER_* variables from environ (os.Environ() form).
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err) // the *PathError names the operation and path
		}
		defer f.Close()
		cfg, err = Parse(f)
		if err != nil {
			return cfg, fmt.Errorf("%w (in %s)", err, path)
		}
	}
	if err := cfg.ApplyEnv(environ); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Keys lists the keys that may be overridden by environment variables and flags:
// every top-level field of a scalar or string-list type.
func Keys() []string {
	t := reflect.TypeOf(Config{})
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if settable(f.Type) {
			keys = append(keys, yamlKey(f))
		}
	}
	return keys
}

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return k
}

func settable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// Set overrides one top-level key (as named in YAML) with a string value, as
// given on the command line or in the environment.
func (c *Config) Set(key, value string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if yamlKey(f) != key || !settable(f.Type) {
			continue
		}
		fv := v.Field(i)
		if f.Type == reflect.TypeOf(time.Duration(0)) {
			d, err := time.ParseDuration(value)
			if err != nil {
				return fieldErr(key, value, "not a duration like 30s")
			}
			fv.SetInt(int64(d))
			return nil
		}
		switch f.Type.Kind() {
		case reflect.String:
			fv.SetString(value)
		case reflect.Bool:
			b, err := strconv.ParseBool(value)
			if err != nil {
				return fieldErr(key, value, "not a boolean")
			}
			fv.SetBool(b)
		case reflect.Int, reflect.Int64:
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return fieldErr(key, value, "not an integer")
			}
			fv.SetInt(n)
		case reflect.Float64:
			x, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return fieldErr(key, value, "not a number")
			}
			fv.SetFloat(x)
		case reflect.Slice:
			var list []string
			for _, s := range strings.Split(value, ",") {
				if s = strings.TrimSpace(s); s != "" {
					list = append(list, s)
				}
			}
			fv.Set(reflect.ValueOf(list))
		}
		return nil
	}
	return fieldErr(key, value, "unknown setting")
}

// ApplyEnv applies REFROUTER_<KEY> variables from environ (os.Environ() form).
func (c *Config) ApplyEnv(environ []string) error {
	known := map[string]string{}
	for _, k := range Keys() {
		known["REFROUTER_"+strings.ToUpper(k)] = k
	}
	structured := map[string]string{} // keys only the file can set
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); !settable(f.Type) && yamlKey(f) != "" {
			structured["REFROUTER_"+strings.ToUpper(yamlKey(f))] = yamlKey(f)
		}
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if key, ok := structured[name]; ok {
			return &Error{Field: key, Err: fmt.Errorf("cannot be set from the environment (%s); set it in the config file", name)}
		}
		if key, ok := known[name]; ok {
			if err := c.Set(key, value); err != nil {
				return fmt.Errorf("%w (from %s)", err, name)
			}
		}
	}
	return nil
}

// DSNError is the text of a DSN parse error without the DSN it quotes: pgx
// masks a password only in some spellings ("password=x", not "password = x").
func DSNError(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '`'); i >= 0 {
		if j := strings.LastIndexByte(msg, '`'); j > i {
			msg = msg[:i] + "(dsn not shown)" + msg[j+1:]
		}
	}
	return msg
}

// loopbackAddr reports whether a listen address (host:port) is on loopback.
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Validate checks the configuration and returns the first problem as *Error.
func (c *Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fieldErr("name", c.Name, "must be 1-32 characters of a-z, 0-9 and -, starting with a letter or digit")
	}
	if c.Region == "" || len(c.Region) > 32 {
		return fieldErr("region", c.Region, "must be 1-32 characters")
	}
	if c.Lat < -90 || c.Lat > 90 || c.Lat != c.Lat {
		return fieldErr("lat", fmt.Sprint(c.Lat), "must be within [-90, 90]")
	}
	if c.Lon < -180 || c.Lon > 180 || c.Lon != c.Lon {
		return fieldErr("lon", fmt.Sprint(c.Lon), "must be within [-180, 180]")
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.RawQuery != "" ||
		u.User != nil || u.Fragment != "" || strings.ContainsFunc(c.PublicURL, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return fieldErr("public_url", c.PublicURL, "must be an absolute http(s) URL with a host, of visible ASCII, without user info, query or fragment (set it when listen has no host)")
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	for _, a := range []struct{ field, v string }{{"listen", c.Listen}, {"gossip", c.Gossip}, {"cluster", c.Cluster}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			return fieldErr(a.field, a.v, "must be host:port")
		}
	}
	for _, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fieldErr("seeds", s, "must be host:port")
		}
	}
	switch c.Profile {
	case "local", "lan", "wan":
	default:
		return fieldErr("profile", c.Profile, "must be local, lan or wan")
	}
	if c.DeadServerTimeout < 0 {
		return fieldErr("dead_server_timeout", c.DeadServerTimeout.String(), "must not be negative")
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 9 {
		return fieldErr("bootstrap_expect", strconv.Itoa(c.BootstrapExpect), "must be within 0-9")
	}
	if c.DataDir == "" {
		return fieldErr("data_dir", "", "must be set")
	}
	if len(c.Tokens) == 0 {
		return fieldErr("tokens", "", "at least one token is needed (roles admin and platform)")
	}
	for i, t := range c.Tokens {
		field := fmt.Sprintf("tokens[%d]", i)
		if t.Role != RoleAdmin && t.Role != RolePlatform {
			return fieldErr(field+".role", t.Role, "must be admin or platform")
		}
		if (t.Token == "") == (t.TokenFile == "") {
			return fieldErr(field, "", "exactly one of token and token_file must be set")
		}
	}
	if len(c.Secrets) == 0 && c.SecretsFile == "" {
		return fieldErr("secrets", "", "at least one master link key is needed (secrets or secrets_file)")
	}
	for i, s := range c.Secrets {
		if k, err := base64.StdEncoding.DecodeString(s.Key); err != nil || len(k) < 32 {
			return fieldErr(fmt.Sprintf("secrets[%d].key", i), redact(s.Key), "must be base64 of at least 32 bytes")
		}
	}
	if c.ClickTokenVersion != 1 && c.ClickTokenVersion != 2 {
		return fieldErr("click_token_version", strconv.Itoa(c.ClickTokenVersion), "must be 1 or 2")
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				return fieldErr("trusted_proxies", p, "must be a CIDR or an IP address")
			}
		}
	}
	switch c.TrustedProxyHeader {
	case "", "x-forwarded-for", "forwarded", "auto": // "": the default
	default:
		return fieldErr("trusted_proxy_header", c.TrustedProxyHeader, "must be x-forwarded-for, forwarded or auto")
	}
	if t := c.ClusterTLS; t != (TLS{}) && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		return fieldErr("cluster_tls", "", "cert_file, key_file and ca_file are all needed for mutual TLS")
	}
	switch c.Routing.Mode {
	case "", "local", "redirect":
	default:
		return fieldErr("routing.mode", c.Routing.Mode, "must be local or redirect")
	}
	if c.Routing.ThresholdKm < 0 {
		return fieldErr("routing.threshold_km", fmt.Sprint(c.Routing.ThresholdKm), "must not be negative")
	}
	if c.OutboxMaxBytes < 1<<20 {
		return fieldErr("outbox_max_bytes", strconv.FormatInt(c.OutboxMaxBytes, 10), "must be at least 1 MiB")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("log_level", c.LogLevel, "must be debug, info, warn or error")
	}
	return nil
}

func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:4] + "…"
}

// Resolved holds the secrets of a Config read from wherever the config points.
type Resolved struct {
	Tokens     map[string]string // token → role
	GossipKey  []byte
	ClusterKey []byte
	Secrets    []Secret
	DSN        string
	ClusterTLS *tls.Config // nil without cluster_tls
}

// Resolve reads token, key, secret and DSN files and decodes keys.
func (c *Config) Resolve() (Resolved, error) {
	r := Resolved{Tokens: map[string]string{}}
	for i, t := range c.Tokens {
		tok := t.Token
		if t.TokenFile != "" {
			b, err := os.ReadFile(t.TokenFile)
			if err != nil {
				return r, &Error{Field: fmt.Sprintf("tokens[%d].token_file", i), Value: t.TokenFile, Err: err}
			}
			tok = strings.TrimSpace(string(b))
		}
		if len(tok) < 16 {
			return r, fieldErr(fmt.Sprintf("tokens[%d]", i), redact(tok), "a token must be at least 16 characters")
		}
		r.Tokens[tok] = t.Role
	}
	var err error
	if r.GossipKey, err = readKey("gossip_key", c.GossipKey, c.GossipKeyFile); err != nil {
		return r, err
	}
	if r.GossipKey != nil {
		switch len(r.GossipKey) {
		case 16, 24, 32:
		default:
			return r, fieldErr("gossip_key", "", "must decode to 16, 24 or 32 bytes, not %d", len(r.GossipKey))
		}
	}
	if r.ClusterKey, err = readKey("cluster_key", c.ClusterKey, c.ClusterKeyFile); err != nil {
		return r, err
	}
	if r.ClusterKey != nil && len(r.ClusterKey) < 16 {
		return r, fieldErr("cluster_key", "", "must decode to at least 16 bytes")
	}
	// Beyond loopback, the keys are what keeps strangers out of the ledger
	// (the cluster port takes commands) and out of the membership (gossip
	// decides which nodes redirect to where and which become raft servers).
	if !loopbackAddr(c.Cluster) || !loopbackAddr(c.Gossip) {
		if r.ClusterKey == nil {
			return r, fieldErr("cluster_key", "", "is required when the cluster or gossip port listens beyond loopback (set cluster_key_file)")
		}
		if r.GossipKey == nil {
			return r, fieldErr("gossip_key", "", "is required when the cluster or gossip port listens beyond loopback (set gossip_key_file)")
		}
	}
	r.Secrets = append(r.Secrets, c.Secrets...)
	if c.SecretsFile != "" {
		b, err := os.ReadFile(c.SecretsFile)
		if err != nil {
			return r, &Error{Field: "secrets_file", Value: c.SecretsFile, Err: err}
		}
		var more []Secret
		if err := yaml.Unmarshal(b, &more); err != nil {
			// The parser's message quotes the text it could not read, which
			// here is a key: name the lines only.
			lines := strings.Join(regexp.MustCompile(`line \d+`).FindAllString(err.Error(), 3), ", ")
			return r, &Error{Field: "secrets_file", Value: c.SecretsFile,
				Err: fmt.Errorf("not a YAML list of {gen, key, retire_at, issue_from} (%s; the parser's message is not shown, it may quote a key)", lines)}
		}
		r.Secrets = append(r.Secrets, more...)
	}
	if len(r.Secrets) == 0 {
		return r, fieldErr("secrets", "", "no master link key")
	}
	if c.ClusterTLS != (TLS{}) {
		if r.ClusterTLS, err = c.ClusterTLS.load(); err != nil {
			return r, err
		}
	}
	r.DSN = c.DSN
	if c.DSNFile != "" {
		b, err := os.ReadFile(c.DSNFile)
		if err != nil {
			return r, &Error{Field: "dsn_file", Value: c.DSNFile, Err: err}
		}
		r.DSN = strings.TrimSpace(string(b))
	}
	return r, nil
}

// load builds the mutual-TLS configuration: this node's certificate, and
// the CA that every peer's certificate (client or server) must chain to.
func (t TLS) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, &Error{Field: "cluster_tls.cert_file", Value: t.CertFile, Err: err}
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, &Error{Field: "cluster_tls.ca_file", Value: t.CAFile, Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fieldErr("cluster_tls.ca_file", t.CAFile, "no PEM certificate in the file")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   t.ServerName,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

func readKey(field, inline, file string) ([]byte, error) {
	v := inline
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, &Error{Field: field + "_file", Value: file, Err: err}
		}
		v = strings.TrimSpace(string(b))
	}
	if v == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fieldErr(field, redact(v), "not base64: %v", err)
	}
	return k, nil
}

// ErrNoConfig is returned by commands that need a config file and got none.
var ErrNoConfig = errors.New("config: no config file given (use --config)")

// Marshal renders the configuration as YAML.
func (c Config) Marshal() ([]byte, error) {
	return yaml.Marshal(c)
}
