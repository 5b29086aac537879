package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	sjson "sigs.k8s.io/json"

	"github.com/refrouter/refrouter/config"
)

// serviceMonitor is the subset of monitoring.coreos.com/v1 ServiceMonitor we
// use; the operator's Go types are a heavy module.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

var errUnknownKind = errors.New("unknown apiVersion/kind")

// strictDecode decodes YAML into obj the way the API server does: duplicate
// keys, unknown fields and fields that differ only in case are errors.
// (sigs.k8s.io/yaml.UnmarshalStrict goes through encoding/json, which
// matches field names case-insensitively and so accepts "clusterIp".)
func strictDecode(doc []byte, obj any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return fmt.Errorf("yaml to json: %w", err)
	}
	strictErrs, err := sjson.UnmarshalStrict(js, obj, sjson.DisallowDuplicateFields, sjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return errors.Join(strictErrs...)
	}
	return nil
}

// decodeObject decodes one YAML document strictly into the Go type of its
// apiVersion and kind.
func decodeObject(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("read type: %w", err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		obj = &serviceMonitor{}
	default:
		return nil, fmt.Errorf("%w: %q %q", errUnknownKind, tm.APIVersion, tm.Kind)
	}
	if err := strictDecode(doc, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	return obj, nil
}

// splitDocs splits a multi-document YAML stream, dropping empty documents.
func splitDocs(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split yaml: %w", err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("parse yaml: %w", err)
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
}

func TestEveryFileDecodesStrictly(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 12 {
		t.Fatalf("found only %d YAML files: %v", len(files), files)
	}
	for _, p := range files {
		t.Run(p, func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			switch filepath.Base(p) {
			case "kustomization.yaml":
				var k types.Kustomization
				if err := strictDecode(data, &k); err != nil {
					t.Fatalf("kustomization: %v", err)
				}
				if len(k.Resources) == 0 {
					t.Errorf("kustomization lists no resources")
				}
			case "config.yaml":
				c, err := config.Parse(bytes.NewReader(data))
				if err != nil {
					t.Fatalf("node config: %v", err)
				}
				checkPorts(t, c)
			default:
				docs, err := splitDocs(data)
				if err != nil {
					t.Fatal(err)
				}
				if len(docs) == 0 {
					t.Fatal("no documents")
				}
				for i, doc := range docs {
					if _, err := decodeObject(doc); err != nil {
						t.Errorf("document %d: %v", i, err)
					}
				}
			}
		})
	}
}

func TestDecodeObjectRejects(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: StatefulSet\nspec: {replicas: many}\n"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, name: b}\n"},
		{"servicemonitor unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec: {endpoints: [{port: http, pth: /metrics}]}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeObject([]byte(tt.doc)); err == nil {
				t.Fatalf("decodeObject accepted %q", tt.doc)
			}
		})
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, p := range []string{"base/statefulset.yaml", "base/service-peer.yaml", "base/servicemonitor.yaml", "base/pdb.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: v1\nkind: Service\nspec: {clusterIp: None}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := splitDocs(data)
		if err != nil {
			return
		}
		for _, doc := range docs {
			obj, err := decodeObject(doc)
			if err == nil && obj == nil {
				t.Fatal("nil object without error")
			}
		}
	})
}

// portOf returns the port number of a host:port listen address.
func portOf(t *testing.T, field, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", field, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", field, addr, err)
	}
	return n
}

func checkPorts(t *testing.T, c config.Config) {
	t.Helper()
	for _, tc := range []struct {
		field, addr string
		want        int
	}{{"listen", c.Listen, 8080}, {"gossip", c.Gossip, 7946}, {"cluster", c.Cluster, 7947}} {
		if got := portOf(t, tc.field, tc.addr); got != tc.want {
			t.Errorf("config %s port = %d, want %d", tc.field, got, tc.want)
		}
	}
	for _, s := range c.Seeds {
		if got := portOf(t, "seed", s); got != 7946 {
			t.Errorf("seed %q port = %d, want 7946", s, got)
		}
	}
}

// rendered holds one overlay's objects, by kind.
type rendered struct {
	statefulSets []*appsv1.StatefulSet
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	pdbs         []*policyv1.PodDisruptionBudget
	monitors     []*serviceMonitor
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	docs, err := splitDocs(out)
	if err != nil {
		t.Fatal(err)
	}
	var r rendered
	for i, doc := range docs {
		obj, err := decodeObject(doc)
		if err != nil {
			t.Fatalf("rendered document %d of %s: %v", i, dir, err)
		}
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			r.statefulSets = append(r.statefulSets, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.Secret:
			r.secrets = append(r.secrets, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *serviceMonitor:
			r.monitors = append(r.monitors, o)
		}
	}
	return r
}

func findNamed[T any](t *testing.T, objs []*T, name func(*T) string, want string) *T {
	t.Helper()
	for _, o := range objs {
		if name(o) == want {
			return o
		}
	}
	t.Fatalf("no object named %q", want)
	return nil
}

// resolvePort resolves a Service targetPort or probe port against the
// container's ports.
func resolvePort(t *testing.T, c corev1.Container, p intstr.IntOrString, proto corev1.Protocol) int32 {
	t.Helper()
	for _, cp := range c.Ports {
		if cp.Protocol != proto {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %s/%s is not a port of container %s", p.String(), proto, c.Name)
	return 0
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

var overlays = []struct {
	region    string
	lat, lon  float64
	publicURL string
}{
	{"ap-east", 22.32, 114.17, "https://hk.ref.example.com"},
	{"eu-central", 50.11, 8.68, "https://fra.ref.example.com"},
	{"us-east", 38.95, -77.45, "https://iad.ref.example.com"},
}

func TestOverlaysRender(t *testing.T) {
	const namespace = "refrouter"
	var (
		allServices []*corev1.Service
		allMonitors []*serviceMonitor
		voters      int32
		expect      = map[int]bool{}
	)
	for _, ov := range overlays {
		t.Run(ov.region, func(t *testing.T) {
			r := render(t, filepath.Join("overlays", ov.region))
			allServices = append(allServices, r.services...)
			allMonitors = append(allMonitors, r.monitors...)
			prefix := ov.region + "-refrouter"
			if len(r.statefulSets) != 1 || len(r.services) != 2 || len(r.configMaps) != 1 ||
				len(r.secrets) != 2 || len(r.pdbs) != 1 || len(r.monitors) != 1 {
				t.Fatalf("object counts: sts %d svc %d cm %d secret %d pdb %d sm %d",
					len(r.statefulSets), len(r.services), len(r.configMaps), len(r.secrets), len(r.pdbs), len(r.monitors))
			}
			sts := r.statefulSets[0]
			if sts.Name != prefix {
				t.Errorf("statefulset name %q, want %q", sts.Name, prefix)
			}
			peer := findNamed(t, r.services, func(s *corev1.Service) string { return s.Name }, prefix+"-peer")
			httpSvc := findNamed(t, r.services, func(s *corev1.Service) string { return s.Name }, prefix)
			findNamed(t, r.pdbs, func(p *policyv1.PodDisruptionBudget) string { return p.Name }, prefix)
			secret := findNamed(t, r.secrets, func(s *corev1.Secret) string { return s.Name }, prefix+"-secrets")
			findNamed(t, r.secrets, func(s *corev1.Secret) string { return s.Name }, prefix+"-tls")
			for _, o := range []metav1.Object{sts, peer, httpSvc, r.pdbs[0], r.configMaps[0], secret} {
				if o.GetNamespace() != namespace {
					t.Errorf("%s namespace %q, want %q", o.GetName(), o.GetNamespace(), namespace)
				}
				if o.GetLabels()["refrouter.io/region"] != ov.region {
					t.Errorf("%s lacks region label %q: %v", o.GetName(), ov.region, o.GetLabels())
				}
			}

			// Identity: stable names under the headless Service.
			if sts.Spec.ServiceName != peer.Name {
				t.Errorf("serviceName %q, want headless service %q", sts.Spec.ServiceName, peer.Name)
			}
			if peer.Spec.ClusterIP != corev1.ClusterIPNone || !peer.Spec.PublishNotReadyAddresses {
				t.Errorf("peer service must be headless and publish not-ready addresses: %+v", peer.Spec)
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 1 {
				t.Fatalf("replicas %v", sts.Spec.Replicas)
			}

			// Selectors all pick this region's pods, and only them.
			podLabels := labels.Set(sts.Spec.Template.Labels)
			selectors := map[string]*metav1.LabelSelector{"statefulset": sts.Spec.Selector, "pdb": r.pdbs[0].Spec.Selector}
			for _, s := range r.services {
				selectors["service "+s.Name] = metav1.SetAsLabelSelector(s.Spec.Selector)
			}
			for name, ls := range selectors {
				sel, err := metav1.LabelSelectorAsSelector(ls)
				if err != nil {
					t.Fatalf("%s selector: %v", name, err)
				}
				if !sel.Matches(podLabels) {
					t.Errorf("%s selector %v does not match pod labels %v", name, sel, podLabels)
				}
				if ls.MatchLabels["refrouter.io/region"] != ov.region {
					t.Errorf("%s selector lacks region %q: %v", name, ov.region, ls.MatchLabels)
				}
			}

			// Ports.
			if len(sts.Spec.Template.Spec.Containers) != 1 {
				t.Fatalf("want one container, got %d", len(sts.Spec.Template.Spec.Containers))
			}
			c := sts.Spec.Template.Spec.Containers[0]
			type pp struct {
				port  int32
				proto corev1.Protocol
			}
			wantPorts := map[string]pp{"http": {8080, "TCP"}, "gossip-tcp": {7946, "TCP"}, "gossip-udp": {7946, "UDP"}, "cluster": {7947, "TCP"}}
			if len(c.Ports) != len(wantPorts) {
				t.Errorf("container ports %v", c.Ports)
			}
			for _, p := range c.Ports {
				if w, ok := wantPorts[p.Name]; !ok || w != (pp{p.ContainerPort, p.Protocol}) {
					t.Errorf("container port %s = %d/%s, want %v", p.Name, p.ContainerPort, p.Protocol, w)
				}
			}
			var peerPorts []pp
			for _, p := range peer.Spec.Ports {
				tp := resolvePort(t, c, p.TargetPort, p.Protocol)
				if tp != p.Port {
					t.Errorf("peer port %d targets %d", p.Port, tp)
				}
				peerPorts = append(peerPorts, pp{p.Port, p.Protocol})
			}
			for _, w := range []pp{{7946, "TCP"}, {7946, "UDP"}, {7947, "TCP"}} {
				if !slices.Contains(peerPorts, w) {
					t.Errorf("headless service lacks %v: %v", w, peerPorts)
				}
			}
			if len(httpSvc.Spec.Ports) != 1 || httpSvc.Spec.Ports[0].Port != 8080 ||
				resolvePort(t, c, httpSvc.Spec.Ports[0].TargetPort, "TCP") != 8080 {
				t.Errorf("http service ports %v", httpSvc.Spec.Ports)
			}

			// Probes.
			for _, pr := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
				if pr.probe == nil || pr.probe.HTTPGet == nil {
					t.Errorf("%s probe missing or not HTTP", pr.name)
					continue
				}
				if pr.probe.HTTPGet.Path != pr.path || resolvePort(t, c, pr.probe.HTTPGet.Port, "TCP") != 8080 {
					t.Errorf("%s probe %s on %s, want %s on 8080", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port.String(), pr.path)
				}
			}

			// Resources sized for about one core and 512Mi per node.
			req := c.Resources.Requests
			if !req.Cpu().Equal(resource.MustParse("1")) || !req.Memory().Equal(resource.MustParse("512Mi")) {
				t.Errorf("requests cpu %s memory %s, want 1 and 512Mi", req.Cpu(), req.Memory())
			}
			lim := c.Resources.Limits.Memory()
			if lim.Cmp(*req.Memory()) < 0 {
				t.Errorf("memory limit %s below request", lim)
			}
			var goMemLimit string
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					goMemLimit = e.Value
				}
			}
			// Go writes MiB/GiB where Kubernetes writes Mi/Gi.
			if q, err := resource.ParseQuantity(strings.TrimSuffix(goMemLimit, "B")); err != nil || q.Cmp(*lim) >= 0 || q.Cmp(*req.Memory()) < 0 {
				t.Errorf("GOMEMLIMIT %q must lie between the memory request %s and limit %s (err %v)", goMemLimit, req.Memory(), lim, err)
			}

			// Environment: references resolve to earlier variables.
			env := map[string]string{}
			for _, e := range c.Env {
				for _, m := range envRef.FindAllStringSubmatch(e.Value, -1) {
					if _, ok := env[m[1]]; !ok {
						t.Errorf("env %s refers to $(%s) before it is defined", e.Name, m[1])
					}
				}
				env[e.Name] = e.Value
			}
			if env["PEER_SERVICE"] != peer.Name {
				t.Errorf("PEER_SERVICE %q, want %q", env["PEER_SERVICE"], peer.Name)
			}
			for _, k := range []string{"REFROUTER_NAME", "REFROUTER_ADVERTISE", "REFROUTER_VOTER", "POD_NAME", "POD_NAMESPACE"} {
				if _, ok := env[k]; !ok {
					t.Errorf("env %s missing", k)
				}
			}
			if env["REFROUTER_VOTER"] == "true" {
				voters += *sts.Spec.Replicas
			}

			// Volumes and mounts.
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range c.VolumeMounts {
				mounts[m.Name] = m
			}
			vols := map[string]corev1.Volume{}
			for _, v := range sts.Spec.Template.Spec.Volumes {
				vols[v.Name] = v
			}
			if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" {
				t.Fatalf("volumeClaimTemplates %v", sts.Spec.VolumeClaimTemplates)
			}
			for name := range mounts {
				if _, ok := vols[name]; !ok && name != "data" {
					t.Errorf("mount %s has no volume", name)
				}
			}
			cm := r.configMaps[0]
			if !strings.HasPrefix(cm.Name, prefix+"-config-") {
				t.Errorf("configmap name %q lacks the generator hash", cm.Name)
			}
			if v := vols["config"]; v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
				t.Errorf("config volume %+v does not refer to configmap %q", v, cm.Name)
			}
			for _, name := range []string{"secrets", "tls"} {
				v := vols[name]
				if v.Secret == nil {
					t.Fatalf("volume %s is not a secret", name)
				}
				findNamed(t, r.secrets, func(s *corev1.Secret) string { return s.Name }, v.Secret.SecretName)
			}
			cfgMount := mounts["config"]
			if i := slices.Index(c.Args, "--config"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != cfgMount.MountPath {
				t.Errorf("args %v do not point --config at %s", c.Args, cfgMount.MountPath)
			}
			if c.Args[0] != "serve" {
				t.Errorf("args %v, want serve first", c.Args)
			}

			// The node config agrees with the manifests.
			raw, ok := cm.Data[cfgMount.SubPath]
			if !ok {
				t.Fatalf("configmap has no key %q", cfgMount.SubPath)
			}
			cfg, err := config.Parse(strings.NewReader(raw))
			if err != nil {
				t.Fatalf("config.yaml: %v", err)
			}
			// The pod's environment, expanded as the kubelet would for pod
			// 0, completes the config; the node's own validation accepts it.
			podEnv := map[string]string{"POD_NAME": sts.Name + "-0", "POD_NAMESPACE": namespace}
			var environ []string
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil {
					continue // POD_NAME, POD_NAMESPACE
				}
				v = envRef.ReplaceAllStringFunc(v, func(ref string) string { return podEnv[ref[2:len(ref)-1]] })
				podEnv[e.Name] = v
				environ = append(environ, e.Name+"="+v)
			}
			if err := cfg.ApplyEnv(environ); err != nil {
				t.Fatalf("apply pod env: %v", err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("config of pod 0 does not validate: %v", err)
			}
			if cfg.Name != sts.Name+"-0" || !cfg.Voter {
				t.Errorf("pod 0 name %q voter %v", cfg.Name, cfg.Voter)
			}
			if want := fmt.Sprintf("%s-0.%s.%s.svc.cluster.local", sts.Name, peer.Name, namespace); cfg.Advertise != want {
				t.Errorf("advertise %q, want %q", cfg.Advertise, want)
			}
			checkPorts(t, cfg)
			if portOf(t, "listen", cfg.Listen) != int(wantPorts["http"].port) ||
				portOf(t, "gossip", cfg.Gossip) != int(wantPorts["gossip-tcp"].port) ||
				portOf(t, "cluster", cfg.Cluster) != int(wantPorts["cluster"].port) {
				t.Errorf("config ports disagree with container ports")
			}
			if cfg.Region != ov.region || cfg.Lat != ov.lat || cfg.Lon != ov.lon || cfg.PublicURL != ov.publicURL {
				t.Errorf("config region %q lat %v lon %v url %q, want %+v", cfg.Region, cfg.Lat, cfg.Lon, cfg.PublicURL, ov)
			}
			if _, ok := cfg.DBRegion[ov.region]; !ok {
				t.Errorf("db_region lacks %q: %v", ov.region, cfg.DBRegion)
			}
			if cfg.DataDir != mounts["data"].MountPath {
				t.Errorf("data_dir %q, data volume mounted at %q", cfg.DataDir, mounts["data"].MountPath)
			}
			self := fmt.Sprintf("%s-0.%s.%s.svc.cluster.local:7946", sts.Name, peer.Name, namespace)
			if !slices.Contains(cfg.Seeds, self) {
				t.Errorf("seeds %v lack this region's first pod %s", cfg.Seeds, self)
			}
			if cfg.Profile != "wan" {
				t.Errorf("profile %q, want wan", cfg.Profile)
			}
			expect[cfg.BootstrapExpect] = true
			secretDir := mounts["secrets"].MountPath
			files := []string{cfg.GossipKeyFile, cfg.ClusterKeyFile, cfg.SecretsFile, cfg.DSNFile}
			roles := map[string]bool{}
			for _, tok := range cfg.Tokens {
				files = append(files, tok.TokenFile)
				roles[tok.Role] = true
			}
			if !roles["admin"] || !roles["platform"] {
				t.Errorf("tokens lack a role: %v", roles)
			}
			for _, f := range files {
				if filepath.Dir(f) != secretDir {
					t.Errorf("secret file %q is not under %s", f, secretDir)
					continue
				}
				if _, ok := secret.StringData[filepath.Base(f)]; !ok {
					t.Errorf("secret %s has no key %q", secret.Name, filepath.Base(f))
				}
			}
		})
	}
	if t.Failed() {
		return
	}
	// Voters across regions meet bootstrap_expect.
	if len(expect) != 1 || !expect[int(voters)] {
		t.Errorf("bootstrap_expect values %v, voters across regions %d", expect, voters)
	}
	// Each ServiceMonitor selects exactly one Service: its region's HTTP one.
	for _, sm := range allMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		var hits []string
		for _, s := range allServices {
			if sel.Matches(labels.Set(s.Labels)) {
				hits = append(hits, s.Name)
			}
		}
		// The HTTP Service and the ServiceMonitor share the prefixed name.
		if want := []string{sm.Name}; !slices.Equal(hits, want) {
			t.Errorf("servicemonitor %s selects %v, want %v", sm.Name, hits, want)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("servicemonitor %s endpoints %+v", sm.Name, sm.Spec.Endpoints)
		}
	}
}
