// Package pgtest runs a real PostgreSQL server for tests.
//
// A test binary shares one server, started on first use by DSN, NewDB or Shared and stopped
// by Main after the tests ran (use it from TestMain). NewDB gives each caller a fresh
// database, dropped at cleanup, so tests do not see each other's rows. The environment
// variable REFROUTER_TEST_DSN points the helpers at an existing server instead.
//
// The server is started from the initdb and postgres binaries found in PATH or in
// /usr/lib/postgresql/*/bin, in a temporary directory, listening on 127.0.0.1 on a free
// port, with fsync off. Since initdb and postgres refuse to run as root, a root process
// runs them as the "postgres" OS user. If no server can be started, tests are skipped
// with the reason, or fail when CI=true.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable that points tests at an existing server.
const EnvDSN = "REFROUTER_TEST_DSN"

// ErrNoServer is returned (wrapped) when no PostgreSQL binaries are found.
var ErrNoServer = errors.New("pgtest: no postgresql server binaries")

// startTimeout bounds initdb plus the wait for the server to accept connections.
const startTimeout = 60 * time.Second

// Server is a PostgreSQL server running in a temporary directory owned by this process.
// Stop and Start keep the port and the data, so tests can simulate an outage.
// Methods are safe for concurrent use.
type Server struct {
	dir  string // root temp dir: data/, sock/, log
	bin  string // directory of initdb, postgres
	port int
	cred *syscall.Credential // nil unless running as root

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// StartServer creates a database cluster in a new temporary directory and starts it.
// The caller owns the Server and must Close it.
func StartServer() (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres OS user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	s.dir, err = os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	if err := s.init(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	if err := s.Start(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) init() error {
	if err := os.Mkdir(filepath.Join(s.dir, "sock"), 0o700); err != nil {
		return fmt.Errorf("pgtest: sock dir: %w", err)
	}
	if s.cred != nil {
		for _, p := range []string{s.dir, filepath.Join(s.dir, "sock")} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return fmt.Errorf("pgtest: chown %q: %w", p, err)
			}
		}
	}
	cmd := exec.Command(filepath.Join(s.bin, "initdb"), "-D", filepath.Join(s.dir, "data"),
		"-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--locale=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w: %s", err, lastLines(string(out), 5))
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	return nil
}

// Start starts the server (again) on its port and waits until it accepts connections.
// Starting a running server is a no-op.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: log file: %w", err)
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(s.port), "-k", filepath.Join(s.dir, "sock"),
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: if the test binary dies without stopping us, the postmaster shuts down.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that forked, so that thread must live as long as postgres.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			logf.Close()
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			c.Close(ctx)
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("pgtest: postgres exited at start: %s", lastLines(s.readLog(), 5))
		case <-ctx.Done():
			s.stopLocked()
			return fmt.Errorf("pgtest: postgres not ready within %v: %w: %s", startTimeout, err, lastLines(s.readLog(), 5))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (fast shutdown: open connections are closed) and waits for it.
// The data and the port are kept for Start. Stopping a stopped server is a no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	s.Stop()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("pgtest: remove %q: %w", s.dir, err)
	}
	return nil
}

// Port returns the TCP port the server listens on (kept across Stop/Start).
func (s *Server) Port() int { return s.port }

// DSN returns a connection string for database db on this server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, url.PathEscape(db))
}

func (s *Server) readLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return string(b)
}

// findBin returns the directory holding initdb and postgres.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("pgtest: initdb/postgres not in PATH nor /usr/lib/postgresql/*/bin: %w", ErrNoServer)
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// shared is the server of this test binary. It is the package's only mutable state,
// written once under sharedOnce and torn down by Main.
var (
	sharedOnce sync.Once
	sharedSrv  *Server
	sharedErr  error
	dbSeq      struct {
		sync.Mutex
		n int
	}
)

func sharedServer() (*Server, error) {
	sharedOnce.Do(func() { sharedSrv, sharedErr = StartServer() })
	return sharedSrv, sharedErr
}

// Main runs the tests and then stops the shared server, if one was started. Call it from
// TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }. It does not return.
func Main(m *testing.M) {
	code := m.Run()
	if sharedSrv != nil {
		sharedSrv.Close()
	}
	os.Exit(code)
}

// unavailable skips tb with the reason, or fails it when CI=true.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("pgtest: PostgreSQL unavailable (CI=true): %v", err)
	}
	tb.Skipf("pgtest: PostgreSQL unavailable: %v", err)
}

// Shared returns the shared server of this test binary, starting it on first use, for tests
// that Stop and Start it. It skips tb when REFROUTER_TEST_DSN is set (an external server
// cannot be stopped). A test that stops the server must Start it again before it returns.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	if os.Getenv(EnvDSN) != "" {
		tb.Skipf("pgtest: %s is set; cannot stop an external server", EnvDSN)
	}
	s, err := sharedServer()
	if err != nil {
		unavailable(tb, err)
	}
	return s
}

// DSN returns a connection string to the shared server's "postgres" database (or
// REFROUTER_TEST_DSN). Tests that write rows should use NewDB instead.
func DSN(tb testing.TB) string {
	tb.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	s, err := sharedServer()
	if err != nil {
		unavailable(tb, err)
	}
	return s.DSN("postgres")
}

// NewDB creates a fresh, empty database on the shared server (or on REFROUTER_TEST_DSN's)
// and returns its connection string. The database is dropped at tb's cleanup.
func NewDB(tb testing.TB) string {
	tb.Helper()
	admin := DSN(tb)
	var rnd [4]byte
	rand.Read(rnd[:])
	dbSeq.Lock()
	dbSeq.n++
	name := fmt.Sprintf("t%d_%d_%s", os.Getpid(), dbSeq.n, hex.EncodeToString(rnd[:]))
	dbSeq.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := execAdmin(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		if os.Getenv(EnvDSN) == "" {
			tb.Fatalf("pgtest: %v", err)
		}
		unavailable(tb, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := execAdmin(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatalf("pgtest: parse dsn: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func execAdmin(ctx context.Context, dsn, sql string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect admin: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
