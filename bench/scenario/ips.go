package scenario

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
)

// IPsFromCIDRs returns n client addresses spread evenly over the prefixes
// (round robin, so each prefix, e.g. one country's test range, gets n/len
// of them), each drawn at random inside its prefix by a PRNG seeded with
// seed: the same arguments give the same list. Prefixes are masked first.
func IPsFromCIDRs(prefixes []netip.Prefix, n int, seed uint64) ([]netip.Addr, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: negative count %d", ErrInvalid, n)
	}
	if len(prefixes) == 0 {
		if n == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: no prefixes to draw %d addresses from", ErrInvalid, n)
	}
	ps := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: prefix %d is not valid", ErrInvalid, i)
		}
		ps[i] = p.Masked()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = randomIn(ps[i%len(ps)], rng)
	}
	return out, nil
}

// randomIn returns a random address inside the masked prefix p.
func randomIn(p netip.Prefix, rng *rand.Rand) netip.Addr {
	a := p.Addr()
	b := a.AsSlice()
	bits := p.Bits()
	for i := range b {
		lo := i * 8 // first bit of byte i
		if lo+8 <= bits {
			continue // fully inside the network part
		}
		r := byte(rng.Uint32())
		if lo < bits {
			keep := byte(0xff) << (8 - (bits - lo)) // network bits of this byte
			b[i] = b[i]&keep | r&^keep
		} else {
			b[i] = r
		}
	}
	out, _ := netip.AddrFromSlice(b) // b has the length of a valid address
	return out
}

// ParsePrefixes parses comma-separated CIDRs ("81.2.69.0/24,2001:db8::/32").
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%w: prefix %d: %w", ErrInvalid, i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ReadIPs reads client addresses, one per line. Blank lines and lines
// starting with '#' are skipped; surrounding spaces are trimmed. A bad line
// is an error naming its line number.
func ReadIPs(r io.Reader) ([]netip.Addr, error) {
	var out []netip.Addr
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrInvalid, line, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ips after line %d: %w", line, err)
	}
	return out, nil
}

// ReadIPsFile reads client addresses from the file at path (see ReadIPs);
// errors name the file and line.
func ReadIPsFile(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open ip list: %w", err)
	}
	defer f.Close()
	ips, err := ReadIPs(f)
	if err != nil {
		return nil, fmt.Errorf("ip list %q: %w", path, err)
	}
	return ips, nil
}
