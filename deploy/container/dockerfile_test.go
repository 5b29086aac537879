package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

var errDockerfile = errors.New("dockerfile syntax error")

// parseDockerfile splits a Dockerfile into instructions: comments and blank
// lines are dropped, lines ending in a backslash continue, and every
// instruction must start with a known keyword.
func parseDockerfile(r io.Reader) ([]instruction, error) {
	known := map[string]bool{"FROM": true, "RUN": true, "CMD": true, "LABEL": true, "EXPOSE": true, "ENV": true,
		"ADD": true, "COPY": true, "ENTRYPOINT": true, "VOLUME": true, "USER": true, "WORKDIR": true, "ARG": true,
		"ONBUILD": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true}
	var (
		out   []instruction
		cur   strings.Builder
		start int
	)
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		cont := strings.HasSuffix(line, "\\")
		cur.WriteString(strings.TrimSuffix(line, "\\"))
		if cont {
			cur.WriteByte(' ')
			continue
		}
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			continue
		}
		cmd, args, _ := strings.Cut(text, " ")
		cmd = strings.ToUpper(cmd)
		if !known[cmd] {
			return nil, fmt.Errorf("%w: line %d: unknown instruction %q", errDockerfile, start, cmd)
		}
		out = append(out, instruction{cmd: cmd, args: strings.Join(strings.Fields(args), " "), line: start})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read dockerfile: %w", err)
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("%w: ends in a line continuation", errDockerfile)
	}
	if len(out) > 0 && out[0].cmd != "FROM" && out[0].cmd != "ARG" {
		return nil, fmt.Errorf("%w: first instruction is %s, want FROM or ARG", errDockerfile, out[0].cmd)
	}
	return out, nil
}

func TestParseDockerfile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // "CMD args"
		wantErr bool
	}{
		{"simple", "FROM scratch\nCOPY a /a\n", []string{"FROM scratch", "COPY a /a"}, false},
		{"continuation and comments", "# c\nARG X=1\nFROM x AS b\nRUN a && \\\n    b\n\nUSER 1:1\n", []string{"ARG X=1", "FROM x AS b", "RUN a && b", "USER 1:1"}, false},
		{"lower case keyword", "from scratch\n", []string{"FROM scratch"}, false},
		{"unknown instruction", "FROM scratch\nFETCH x\n", nil, true},
		{"starts with run", "RUN x\n", nil, true},
		{"dangling continuation", "FROM scratch\nRUN a \\\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDockerfile(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, errDockerfile) {
					t.Fatalf("err %v is not errDockerfile", err)
				}
				return
			}
			var s []string
			for _, in := range got {
				s = append(s, in.cmd+" "+in.args)
			}
			if !slices.Equal(s, tt.want) {
				t.Fatalf("got %q, want %q", s, tt.want)
			}
		})
	}
}

func FuzzParseDockerfile(f *testing.F) {
	f.Add("FROM scratch\nRUN a \\\n b\n")
	f.Add("RUN x\n")
	if b, err := os.ReadFile("Dockerfile"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := parseDockerfile(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, i := range got {
			if i.cmd == "" || i.line < 1 || strings.ToUpper(i.cmd) != i.cmd {
				t.Fatalf("bad instruction %+v", i)
			}
		}
	})
}

func TestDockerfileContract(t *testing.T) {
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ins, err := parseDockerfile(f)
	if err != nil {
		t.Fatal(err)
	}
	var stages []int // index of each FROM
	for i, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, i)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(stages))
	}
	final := ins[stages[len(stages)-1]:]
	build := ins[:stages[len(stages)-1]]

	base := strings.Fields(final[0].args)[0]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final base %q, want distroless static or scratch", base)
	}
	if strings.HasPrefix(base, "gcr.io/distroless/") && !strings.HasSuffix(base, ":nonroot") {
		t.Errorf("final base %q, want the :nonroot variant", base)
	}

	var static, buildsBinary bool
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildsBinary = true
			static = strings.Contains(in.args, "CGO_ENABLED=0")
		}
	}
	if !buildsBinary || !static {
		t.Errorf("build stage must run go build with CGO_ENABLED=0 (go build %v, static %v)", buildsBinary, static)
	}

	var user, entry string
	var exposed []string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "RUN":
			t.Errorf("line %d: RUN in the final stage (no shell in distroless/scratch)", in.line)
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("final stage USER %q, want a non-root user", user)
	}
	if !strings.Contains(entry, "/usr/local/bin/refrouter") {
		t.Errorf("ENTRYPOINT %q does not run refrouter", entry)
	}
	for _, p := range []string{"8080/tcp", "7946/tcp", "7946/udp", "7947/tcp"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("EXPOSE lacks %s: %v", p, exposed)
		}
	}
	if base == "scratch" {
		var certs bool
		for _, in := range final {
			certs = certs || (in.cmd == "COPY" && strings.Contains(in.args, "ca-certificates"))
		}
		if !certs {
			t.Error("scratch image without CA certificates")
		}
	}
}

// TestMakeImageWithoutDocker runs `make image` with a docker command that
// cannot reach an engine and checks that it fails with the clear message.
func TestMakeImageWithoutDocker(t *testing.T) {
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mk, "-s", "-f", "deploy/deploy.mk", "image", "DOCKER=false")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("make image without an engine: err %v, want a non-zero exit\n%s", err, out)
	}
	if !strings.Contains(string(out), "no Docker engine running here; Dockerfile at deploy/container/Dockerfile") {
		t.Fatalf("make image output lacks the message:\n%s", out)
	}
}
