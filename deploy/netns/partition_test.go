package netns_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refrouter/refrouter/config"
	"github.com/refrouter/refrouter/deploy/netns"
)

// TestPartition runs three refrouter nodes as three hosts, cuts one off,
// and checks issue 8's partition contract: both sides keep redirecting and
// acknowledging registrations, and after healing every acknowledged
// registration is decided, exactly one decision per invitee.
func TestPartition(t *testing.T) {
	if os.Getenv("REFROUTER_NETNS_TEST") == "0" {
		t.Skip("REFROUTER_NETNS_TEST=0: the 3-node partition test is switched off")
	}
	n := netns.Start(t, 3) // skips where ip netns is unavailable, unless CI=true as root
	bin := buildRefrouter(t)
	h := newHarness(t, n, bin)
	h.startAll()
	h.waitReady(1, 2, 3)

	h.do(1, "POST", "/v1/campaigns", h.admin, campaignBody(), http.StatusCreated, http.StatusOK)
	var link struct{ Code, URL, QR string }
	h.decode(h.do(1, "POST", "/v1/campaigns/spring-live/links", h.platform, `{"inviter":"u1"}`, http.StatusCreated, http.StatusOK), &link)
	if link.Code == "" {
		t.Fatal("link without a code")
	}
	for i := 1; i <= 3; i++ {
		h.waitFor(30*time.Second, fmt.Sprintf("host %d redirects the new link", i), func() error {
			_, err := h.click(i, link.Code)
			return err
		})
	}

	n.Cut(3)
	t.Logf("host 3 cut off")
	// Host 3 notices it has lost the leader (or its followers) and says so;
	// hosts 1 and 2 keep or elect a leader between them.
	h.waitFor(30*time.Second, "host 3 reports degraded", func() error { return h.readyStatus(3, "degraded") })
	h.waitFor(30*time.Second, "hosts 1 and 2 have a leader", func() error {
		if err := h.readyStatus(1, "ready"); err != nil {
			return err
		}
		return h.readyStatus(2, "ready")
	})

	var regs []registration
	for i := 1; i <= 3; i++ {
		for k := 0; k < 4; k++ {
			regs = append(regs, h.register(i, link.Code, fmt.Sprintf("inv-h%d-%d", i, k)))
		}
	}
	// The same invitee on both sides of the partition.
	regs = append(regs, h.register(1, link.Code, "inv-both"), h.register(3, link.Code, "inv-both"))

	// Cut off from the leader, host 3 cannot decide: its registrations stay
	// pending (fail closed) until the partition heals.
	for _, r := range regs {
		if r.host != 3 {
			continue
		}
		if st, err := h.status(3, r.id); err != nil || st != "pending" {
			t.Errorf("host 3 registration %s during the partition: status %q (err %v), want pending", r.id, st, err)
		}
	}

	n.Heal(3)
	t.Logf("host 3 healed")
	h.waitReady(1, 2, 3)

	final := map[string]string{} // registration id → final status
	for _, r := range regs {
		h.waitFor(60*time.Second, fmt.Sprintf("registration %s (%s at host %d) decided", r.id, r.invitee, r.host), func() error {
			st, err := h.status(r.host, r.id)
			if err != nil {
				return err
			}
			if st == "pending" {
				return fmt.Errorf("still pending")
			}
			final[r.id] = st
			return nil
		})
	}
	// Every host agrees on every decision once healed.
	for _, r := range regs {
		for i := 1; i <= 3; i++ {
			h.waitFor(30*time.Second, fmt.Sprintf("host %d agrees on %s", i, r.id), func() error {
				st, err := h.status(i, r.id)
				if err != nil {
					return err
				}
				if st != final[r.id] {
					return fmt.Errorf("status %q, registering host says %q", st, final[r.id])
				}
				return nil
			})
		}
	}
	decisions := map[string]map[string]string{} // invitee → id → status
	for _, r := range regs {
		if decisions[r.invitee] == nil {
			decisions[r.invitee] = map[string]string{}
		}
		decisions[r.invitee][r.id] = final[r.id]
	}
	for invitee, byID := range decisions {
		var deciding []string
		for id, st := range byID {
			switch base, _, _ := strings.Cut(st, " "); base {
			case "rewarded", "capped", "held", "rejected":
				deciding = append(deciding, id+"="+st)
			case "duplicate":
			default:
				t.Errorf("invitee %s: registration %s has unknown status %q", invitee, id, st)
			}
		}
		if len(deciding) != 1 {
			t.Errorf("invitee %s: want exactly one decision, got %v (all: %v)", invitee, deciding, byID)
		} else if !strings.HasSuffix(deciding[0], "=rewarded") {
			t.Errorf("invitee %s: decision %s, want rewarded (budget and caps allow it)", invitee, deciding[0])
		}
	}
	// The ledger counted each invitee once, on every host.
	for i := 1; i <= 3; i++ {
		var prog struct{ Invites, Rewarded, Value, Tier int64 }
		h.decode(h.do(i, "GET", "/v1/campaigns/spring-live/inviters/u1", h.platform, "", http.StatusOK), &prog)
		if prog.Invites != int64(len(decisions)) || prog.Rewarded != int64(len(decisions)) {
			t.Errorf("host %d: inviter u1 progress %+v, want %d invites, all rewarded", i, prog, len(decisions))
		}
	}
	t.Logf("%d registrations acknowledged during the partition; decisions by invitee: %v", len(regs), decisions)
	// Idempotent: the same (campaign, invitee) again on the same host gives
	// the same id and decision.
	again := h.register(1, link.Code, "inv-h1-0")
	if again.id != regs[0].id {
		t.Errorf("re-registering inv-h1-0 gave id %s, first time %s", again.id, regs[0].id)
	}
}

func campaignBody() string {
	now := time.Now().UTC()
	b, _ := json.Marshal(map[string]any{
		"id":                 "spring-live",
		"destination":        "https://live.example.com/room/42",
		"allowed_hosts":      []string{"live.example.com"},
		"starts_at":          now.Add(-time.Hour).Format(time.RFC3339),
		"ends_at":            now.Add(24 * time.Hour).Format(time.RFC3339),
		"budget":             map[string]any{"value": 100000},
		"invitee_reward":     map[string]any{"value": 10},
		"inviter_rewards":    []map[string]any{{"from": 1, "to": 3, "value": 10}, {"from": 4, "to": 10, "value": 20}, {"from": 11, "value": 50}},
		"per_inviter_cap":    20,
		"attribution_window": "168h",
		"attribution_model":  "last_click",
		// The test registers within a millisecond of the click, from one address.
		"fraud": map[string]any{"min_click_to_register": "1ns", "max_per_ip_per_hour": 1000},
	})
	return string(b)
}

// buildRefrouter builds ../../cmd/refrouter into a temp dir.
func buildRefrouter(t *testing.T) string {
	t.Helper()
	root := filepath.Join(filepath.Dir(netns.Script()), "..", "..")
	bin := filepath.Join(t.TempDir(), "refrouter")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/refrouter")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/refrouter in %s: %v\n%s", root, err, out)
	}
	return bin
}

type registration struct {
	host    int
	id      string
	invitee string
}

type harness struct {
	t               *testing.T
	n               *netns.Net
	bin, dir        string
	admin, platform string
	key             string
	clients         map[int]*http.Client
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newHarness(t *testing.T, n *netns.Net, bin string) *harness {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, n: n, bin: bin, dir: t.TempDir(),
		admin: randHex(t, 16), platform: randHex(t, 16),
		key:     base64.StdEncoding.EncodeToString(key),
		clients: map[int]*http.Client{},
	}
	for i := 1; i <= n.N(); i++ {
		// Each host talks to itself: that works whether or not it is cut.
		h.clients[i] = n.HTTPClient(i, 2*time.Second)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i := 1; i <= n.N(); i++ {
			b, _ := os.ReadFile(filepath.Join(h.dir, fmt.Sprintf("h%d.log", i)))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- host %d log (tail) ---\n%s", i, b)
		}
	})
	return h
}

var regions = []struct {
	name, region string
	lat, lon     float64
}{
	{"hk-1", "ap-east", 22.32, 114.17},
	{"fra-1", "eu-central", 50.11, 8.68},
	{"iad-1", "us-east", 38.95, -77.45},
}

// nodeConfig writes host i's configuration, in the node config schema.
func (h *harness) nodeConfig(i int) string {
	cfg := config.Default()
	r := regions[(i-1)%len(regions)]
	ip := h.n.Addr(i).String()
	cfg.Name, cfg.Region, cfg.Lat, cfg.Lon = r.name, r.region, r.lat, r.lon
	cfg.PublicURL = "http://" + ip + ":8080"
	cfg.Listen, cfg.Gossip, cfg.Cluster = ip+":8080", ip+":7946", ip+":7947"
	cfg.Advertise = ip
	cfg.Seeds = nil
	for j := 1; j <= h.n.N(); j++ {
		if j != i {
			cfg.Seeds = append(cfg.Seeds, h.n.Addr(j).String()+":7946")
		}
	}
	cfg.Profile = "lan"
	cfg.Voter = true
	cfg.BootstrapExpect = 3
	cfg.DataDir = filepath.Join(h.dir, fmt.Sprintf("h%d-data", i))
	cfg.Tokens = []config.Token{{Token: h.admin, Role: config.RoleAdmin}, {Token: h.platform, Role: config.RolePlatform}}
	cfg.Secrets = []config.Secret{{Gen: 1, Key: h.key}}
	// Beyond loopback the node requires both keys; the link key will do
	// for them here (32 random bytes, base64).
	cfg.GossipKey, cfg.ClusterKey = h.key, h.key
	if err := cfg.Validate(); err != nil {
		h.t.Fatalf("host %d config: %v", i, err)
	}
	b, err := cfg.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	p := filepath.Join(h.dir, fmt.Sprintf("h%d.yaml", i))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) startAll() {
	for i := 1; i <= h.n.N(); i++ {
		logf, err := os.Create(filepath.Join(h.dir, fmt.Sprintf("h%d.log", i)))
		if err != nil {
			h.t.Fatal(err)
		}
		h.t.Cleanup(func() { logf.Close() })
		cmd := h.n.Command(context.Background(), i, h.bin, "serve", "--config", h.nodeConfig(i))
		cmd.Stdout, cmd.Stderr = logf, logf
		if _, err := h.n.StartProcess(i, cmd); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) waitFor(timeout time.Duration, what string, cond func() error) {
	h.t.Helper()
	waitFor(h.t, timeout, what, cond)
}

func (h *harness) url(i int, path string) string {
	return "http://" + h.n.Addr(i).String() + ":8080" + path
}

// request sends one request from host i to itself.
func (h *harness) request(i int, method, path, token, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, h.url(i, path), strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.clients[i].Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b, err
}

// do retries the request for up to 30 s until it answers one of want.
func (h *harness) do(i int, method, path, token, body string, want ...int) []byte {
	h.t.Helper()
	var out []byte
	h.waitFor(30*time.Second, fmt.Sprintf("%s %s on host %d answers %v", method, path, i, want), func() error {
		code, _, b, err := h.request(i, method, path, token, body)
		if err != nil {
			return err
		}
		for _, w := range want {
			if code == w {
				out = b
				return nil
			}
		}
		return fmt.Errorf("status %d: %s", code, b)
	})
	return out
}

func (h *harness) decode(b []byte, v any) {
	h.t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		h.t.Fatalf("decode %s: %v", b, err)
	}
}

func (h *harness) readyStatus(i int, want string) error {
	code, _, b, err := h.request(i, "GET", "/readyz", "", "")
	if err != nil {
		return err
	}
	var body struct{ Status string }
	_ = json.Unmarshal(b, &body)
	if code != http.StatusOK || body.Status != want {
		return fmt.Errorf("readyz %d %s, want 200 %s", code, b, want)
	}
	return nil
}

func (h *harness) waitReady(hosts ...int) {
	h.t.Helper()
	for _, i := range hosts {
		h.waitFor(60*time.Second, fmt.Sprintf("host %d ready", i), func() error { return h.readyStatus(i, "ready") })
	}
}

// click follows a share link on host i and returns the click token.
func (h *harness) click(i int, code string) (string, error) {
	status, hdr, b, err := h.request(i, "GET", "/"+code, "", "")
	if err != nil {
		return "", err
	}
	if status != http.StatusFound {
		return "", fmt.Errorf("GET /%s: status %d: %.200s", code, status, b)
	}
	loc, err := url.Parse(hdr.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), "https://live.example.com/room/42") {
		return "", fmt.Errorf("redirect to %q", hdr.Get("Location"))
	}
	tok := loc.Query().Get("rr_click")
	if tok == "" {
		return "", fmt.Errorf("redirect %q without rr_click", loc)
	}
	return tok, nil
}

// register clicks the link on host i and registers invitee there; the host
// must redirect and acknowledge at once (no retries: it is the partition
// contract).
func (h *harness) register(i int, code, invitee string) registration {
	h.t.Helper()
	tok, err := h.click(i, code)
	if err != nil {
		h.t.Fatalf("host %d redirect: %v", i, err)
	}
	body, _ := json.Marshal(map[string]string{"campaign": "spring-live", "click": tok, "invitee": invitee, "device": "d-" + invitee})
	status, _, b, err := h.request(i, "POST", "/v1/registrations", h.platform, string(body))
	if err != nil {
		h.t.Fatalf("host %d register %s: %v", i, invitee, err)
	}
	if status != http.StatusAccepted && status != http.StatusOK {
		h.t.Fatalf("host %d register %s: status %d: %s", i, invitee, status, b)
	}
	var r struct{ ID, Status string }
	h.decode(b, &r)
	if r.ID == "" {
		h.t.Fatalf("host %d register %s: no id in %s", i, invitee, b)
	}
	return registration{host: i, id: r.ID, invitee: invitee}
}

func (h *harness) status(i int, id string) (string, error) {
	code, _, b, err := h.request(i, "GET", "/v1/registrations/"+url.PathEscape(id), h.platform, "")
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", code, b)
	}
	var r struct{ Status, Reason string }
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("decode %s: %w", bytes.TrimSpace(b), err)
	}
	if r.Reason != "" {
		return r.Status + " (" + r.Reason + ")", nil
	}
	return r.Status, nil
}
